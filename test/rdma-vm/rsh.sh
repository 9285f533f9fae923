#!/bin/sh
# ssh's stand-in on the two-host bed, for MPI launchers (Open MPI's plm_rsh_agent, Hydra's
# -launcher-exec):  rsh.sh [OPTIONS] HOST COMMAND...
# Runs COMMAND under rshd.sh on HOST (which two-host-mpi.sh serves on port 2222) with its output
# back here.  Options (Hydra gives ssh's -x) are ignored.  The bed's hosts trust each other: the
# port is reachable only on the guests' private link.  COMMAND's exit status does not come back;
# MPI launchers learn their daemons' fate over their own channel.
while [ "${1#-}" != "$1" ]; do shift; done
host=$1
shift
printf '%s\n' "$*" | exec socat -t 86400 - "TCP:$host:2222"
