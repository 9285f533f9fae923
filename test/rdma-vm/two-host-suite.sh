#!/bin/sh
# The verbs fabric between two hosts: run by run2.sh in both guests (two-host-lib.sh).  Each host
# runs its own agent with the cluster key in $RW/key.  Lines starting
# "RESULT " are what test/rdma-vm.test.ts checks:
#   RESULT <case> sent|received <bytes> <sha256>    a stream's two ends
#   RESULT refused <errno name>                     a connect to a port nothing listens on
#   RESULT <case> <errno name> <seconds>           what a socket reported of a silent peer
#   RESULT stats <json>                             this agent's counters (A: before its agent is
#                                                   killed; B: at the end)
# Cases: b-to-a and a-to-b (16 MiB each way); late-fallback (4 MiB from B to a listener on A
# whose connection a process without the shim accepts: test/rdma-vm/late-fallback.py); buffered
# (B writes 4 MiB and closes before A reads a byte: B's agent buffers what A's ring cannot take,
# as kernel TCP's buffers would); refused; A falling silent for good under a sender
# with TCP_USER_TIMEOUT, under a reader with keepalive, and under a writer that has waited for
# credits (test/rdma-vm/silent-peer.py), offloaded and on kernel TCP; agent-killed: A's agent is
# killed (SIGKILL) under an offloaded stream from B, so its QPs go with it: neither end may read
# that as a clean end; no-agent: while A has none, an offloaded client on B reaches a server on A
# over kernel TCP (A then starts a new agent); last, because a QP it breaks can disturb what
# follows, flap-offload (64 MiB from B while A's link is down for FLAP_S seconds, default 10,
# test/rdma-vm/stream.py) and flap-kernel (the same on kernel TCP).
set -u
. test/rdma-vm/two-host-lib.sh
flap_s=${FLAP_S:-10}
silent_cases='send-offload send-kernel keepalive-offload keepalive-kernel credits-offload credits-kernel'

tcp_listening() { grep -qi ":$(printf '%04X' "$1") 0*:0000 0A" /proc/net/tcp; }
offloaded() { LD_PRELOAD=$shim "$@"; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }

receive() { # case port: one offloaded stream into a file, then its RESULT line (received)
  offloaded socat -u "TCP-LISTEN:$2,reuseaddr" "CREATE:/tmp/$1.bin" &
  rx=$!
  wait_for "tcp_listening $2" 60
  mark "$1-listening"
}
received() { # case: the receiver of `receive` ended
  wait $rx || fail "$1: the receiving socat exited $?"
  echo "RESULT $1 received $(stat -c %s "/tmp/$1.bin") $(sha "/tmp/$1.bin")"
}
send() { # case port bytes: one offloaded stream
  head -c "$3" /dev/urandom > "/tmp/$1.src"
  peer_mark "$1-listening"
  offloaded socat -u "OPEN:/tmp/$1.src" "TCP:$PEER:$2" || fail "$1: the sending socat exited $?"
  echo "RESULT $1 sent $(stat -c %s "/tmp/$1.src") $(sha "/tmp/$1.src")"
}
# Waits until the stream's file on this host holds more than $2 bytes, then takes the link down
# for flap_s seconds.
flap_after() {
  wait_for "[ \$(stat -c %s /tmp/$1.bin 2>/dev/null || echo 0) -gt $2 ]" 120
  say "$1: link down at $(stat -c %s "/tmp/$1.bin") bytes"
  ip link set eth0 down
  sleep "$flap_s" # the fault itself: how long the link stays down
  ip link set eth0 up
  say "$1: link up at $(stat -c %s "/tmp/$1.bin") bytes"
}

start_agent

if [ "$GUEST" = a ]; then
  receive b-to-a 5001; received b-to-a
  send a-to-b 5002 16777216
  # Late fallback: a child without the shim accepts the offloaded listener's connection on
  # kernel TCP; B's agent must carry B's offloaded stream over B's kernel socket, whole.
  offloaded python3 test/rdma-vm/late-fallback.py 5010 late-fallback "$RW" || fail "late-fallback: the receiver failed"
  rm -f /tmp/buffered.resume && mkfifo /tmp/buffered.resume
  offloaded python3 test/rdma-vm/stream.py recv 5011 buffered "$RW" 0 & rx=$!
  peer_mark buffered-written 120
  echo > /tmp/buffered.resume
  wait $rx || fail "buffered: the receiver failed"
  rm -f /tmp/buffered.resume
  peer_mark refused-done
  port=5004
  for c in $silent_cases; do
    case $c in *-offload) run=offloaded ;; *) run= ;; esac
    VTOE_TEST_AGENT_PID=$agent $run python3 test/rdma-vm/silent-peer.py server $port "$c" "$RW" || fail "$c: the silent server failed"
    port=$((port + 1))
  done
  # This host's agent is killed under an offloaded stream, and its QPs go with it.
  # The receiver stops reading at 8 MB until the kill, so B is blocked mid-stream on credits
  # however long the stats call takes under emulation.
  rm -f /tmp/agent-killed.resume && mkfifo /tmp/agent-killed.resume
  LD_PRELOAD=$shim python3 test/rdma-vm/stream.py recv $port agent-killed "$RW" 8000000 & rx=$!
  port=$((port + 1))
  wait_for "[ -e '$RW/a.agent-killed-paused' ]" 120
  echo "RESULT stats $($vtoe stats --json | tr -d '\n')"
  kill -9 "$agent"
  wait "$agent"
  say "agent-killed: agent killed at $(stat -c %s /tmp/agent-killed.bin) bytes"
  echo > /tmp/agent-killed.resume
  wait $rx || fail "agent-killed: the receiver failed"
  rm -f /tmp/agent-killed.resume
  peer_mark agent-killed-told 120
  # No agent here now: B's offloaded client falls back to kernel TCP, whole.
  python3 test/rdma-vm/stream.py recv $port no-agent "$RW" & rx=$!
  port=$((port + 1))
  wait $rx || fail "no-agent: the receiver failed"
  $vtoe agent > "$RW/agent-a2.log" 2>&1 &
  agent=$!
  wait_for "grep -q 'vtoe agent: listening' '$RW/agent-a2.log'" 120
  mark agent-again
  for c in flap-offload flap-kernel; do
    case $c in *-offload) run=offloaded ;; *) run= ;; esac
    $run python3 test/rdma-vm/stream.py recv $port "$c" "$RW" & rx=$!
    port=$((port + 1))
    flap_after "$c" 8000000
    wait $rx || fail "$c: the receiver failed"
  done
  mark done
  peer_mark done
else
  send b-to-a 5001 16777216
  receive a-to-b 5002; received a-to-b
  peer_mark late-fallback-listening
  offloaded python3 test/rdma-vm/stream.py send "$PEER" 5010 late-fallback 4194304 || fail "late-fallback: the sender failed"
  peer_mark buffered-listening
  offloaded python3 test/rdma-vm/stream.py send "$PEER" 5011 buffered 4194304 || fail "buffered: the sender failed"
  mark buffered-written
  offloaded python3 -c '
import errno, socket, sys
s = socket.socket()
try:
    s.connect((sys.argv[1], 5003))
    print("RESULT refused none")
except OSError as e:
    print("RESULT refused", errno.errorcode.get(e.errno, e.errno))
' "$PEER"
  mark refused-done
  port=5004
  for c in $silent_cases; do
    case $c in *-offload) run=offloaded ;; *) run= ;; esac
    $run python3 test/rdma-vm/silent-peer.py client "$PEER" $port "$c" "$RW" || fail "$c: the client failed"
    port=$((port + 1))
  done
  peer_mark agent-killed-listening
  offloaded python3 test/rdma-vm/stream.py send "$PEER" $port agent-killed 67108864 || fail "agent-killed: the sender failed"
  port=$((port + 1))
  mark agent-killed-told
  peer_mark no-agent-listening
  offloaded python3 test/rdma-vm/stream.py send "$PEER" $port no-agent 4194304 || fail "no-agent: the sender failed"
  port=$((port + 1))
  peer_mark agent-again 120
  for c in flap-offload flap-kernel; do
    case $c in *-offload) run=offloaded ;; *) run= ;; esac
    peer_mark "$c-listening"
    $run python3 test/rdma-vm/stream.py send "$PEER" $port "$c" 67108864 || fail "$c: the sender failed"
    port=$((port + 1))
  done
  mark done
  peer_mark done
  echo "RESULT stats $($vtoe stats --json | tr -d '\n')"
fi
stop_agent
