# Sourced by the two-host scripts (two-host-suite.sh, two-host-mpi.sh), run by run2.sh in both
# guests from the repository's root: GUEST (a|b), PEER, RW (a directory both see).  The two sides
# meet at files in $RW, never at a fixed sleep.
repo=$PWD
vtoe="node $repo/bin/vtoe.js"
shim=$repo/preload/libvtoe.so
export VTOE_CLUSTER_KEY_FILE=$RW/key VTOE_AGENT_SOCKET=/tmp/vtoe-2h/agent.sock
other=$([ "$GUEST" = a ] && echo b || echo a)

say() { echo "$GUEST: $*"; }
fail() { say "FAILED: $*"; touch "$RW/$GUEST.failed"; exit 1; }
# Polls a condition (a file, a socket state) every 0.1 s, for at most $2 seconds; gives up at
# once when the other side has failed.
wait_for() {
  i=0
  until eval "$1"; do
    [ -e "$RW/$other.failed" ] && fail "the other host failed"
    i=$((i + 1)); [ $i -lt $(($2 * 10)) ] || fail "timed out waiting for: $1"
    sleep 0.1
  done
}
mark() { touch "$RW/$GUEST.$1"; }
peer_mark() { wait_for "[ -e '$RW/$other.$1' ]" "${2:-120}"; }

# This host's agent, with the cluster key in $RW/key; returns once both hosts' agents listen.
start_agent() {
  mkdir -p /tmp/vtoe-2h && chmod 700 /tmp/vtoe-2h
  $vtoe agent > "$RW/agent-$GUEST.log" 2>&1 &
  agent=$!
  wait_for "grep -q 'vtoe agent: listening' '$RW/agent-$GUEST.log'" 120
  mark agent-up
  peer_mark agent-up
}
stop_agent() {
  kill "$agent"
  wait "$agent"
}
