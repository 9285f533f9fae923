#!/bin/sh
# rsh.sh's other end, one per connection (socat ... fork EXEC:"sh rshd.sh"): runs the command
# line it is sent, with the connection as its stdin and stdout.
read -r line || exit 1
exec sh -c "$line"
