#!/bin/sh
# The verbs fabric's send buffer (the agent stages what the peer's ring cannot take), on against
# off (VTOE_RING_MAX_SIZE=0), in one boot of the one-guest Soft-RoCE bed (2 vCPUs; the agent REQs
# itself over rxe0), each trial with a fresh agent, the two ways alternated ROUNDS times
# (default 3):
#  - AHEAD: how far a writer gets before it blocks while its reader reads nothing (a nonblocking
#    send until EAGAIN), with kernel TCP in the same round for reference;
#  - STREAM: 64 KiB stream bandwidth (vtoe-pingpong stream, 2 s) to a reader that keeps up,
#    where the send buffer must cost nothing, and the most it held meanwhile (STREAM-STAGED).
# Run from the repository's root:
#   d=$(mktemp -d); VTOE_RXE_TIMEOUT=900 test/rdma-vm/run.sh -w $d -- sh bench/verbs-buffering.sh
# Prints:
#   AHEAD <round> <way> <bytes>          STREAM <round> <way> <Gbit/s>
#   STREAM-STAGED <round> <way> <bytes the send buffers held at most during the stream>
#   AHEAD-MEDIAN <way> <bytes>           STREAM-MEDIAN <way> <Gbit/s>     STREAM-RATIO on/off <x>
set -u
repo=$PWD
shim=$repo/preload/libvtoe.so
pp=$repo/tools/bin/vtoe-pingpong
rounds=${ROUNDS:-3}
out=$(mktemp -d)
sock=$out/agent.sock

start_agent() { # ring-max-size
  rm -f "$sock"
  VTOE_FABRIC=verbs VTOE_RING_MAX_SIZE=$1 VTOE_AGENT_SOCKET=$sock node "$repo/bin/vtoe.js" agent > "$out/agent.log" 2>&1 &
  agent=$!
  i=0
  while ! grep -q 'listening on' "$out/agent.log"; do
    i=$((i + 1)); [ $i -lt 300 ] || { echo "agent did not start" >&2; cat "$out/agent.log" >&2; exit 1; }
    sleep 0.1
  done
}
stop_agent() { kill "$agent"; wait "$agent" 2>/dev/null; }

ahead() { # env...: bytes a writer got out before blocking
  mkfifo "$out/go"
  env "$@" python3 "$repo/bench/lazy-sink.py" < "$out/go" > "$out/lazy.out" &
  lazy=$!
  exec 3> "$out/go"
  while ! grep -q READY "$out/lazy.out"; do sleep 0.05; done
  env "$@" python3 "$repo/bench/write-ahead.py" "$(sed -n 's/^READY //p' "$out/lazy.out")" | sed -n 's/^ahead //p'
  echo go >&3
  exec 3>&-
  wait "$lazy"
  rm -f "$out/go"
}

stream() { # env...: Gbit/s
  env "$@" "$pp" server --port 0 --count 1 > "$out/server.out" &
  server=$!
  while ! grep -q READY "$out/server.out"; do sleep 0.05; done
  env "$@" "$pp" client --port "$(sed -n 's/^READY //p' "$out/server.out")" --mode stream --size 65536 --seconds 2 |
    sed -n 's/.*"gbit_per_s":\([0-9.]*\).*/\1/p'
  wait "$server"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for r in $(seq 1 "$rounds"); do
  echo "AHEAD $r kernel-tcp $(ahead X=1)"
  for way in on off; do
    if [ $way = on ]; then start_agent 4194304; else start_agent 0; fi
    echo "STREAM $r $way $(stream LD_PRELOAD="$shim" VTOE_AGENT_SOCKET="$sock")"
    # what the stream put into the send buffer (a reader that keeps up: nothing, or little)
    echo "STREAM-STAGED $r $way $(node "$repo/bin/vtoe.js" stats --socket "$sock" --json |
      node -p 'JSON.parse(require("fs").readFileSync(0)).pinned?.staged?.peak ?? 0')"
    echo "AHEAD $r $way $(ahead LD_PRELOAD="$shim" VTOE_AGENT_SOCKET="$sock")"
    stop_agent
  done
done | tee "$out/all"

for way in kernel-tcp on off; do
  echo "AHEAD-MEDIAN $way $(awk -v w=$way '$1 == "AHEAD" && $3 == w { print $4 }' "$out/all" | median)"
done
for way in on off; do
  awk -v w=$way '$1 == "STREAM" && $3 == w { print $4 }' "$out/all" | median > "$out/stream-$way"
  echo "STREAM-MEDIAN $way $(cat "$out/stream-$way")"
done
echo "STREAM-RATIO on/off $(awk -v a="$(cat "$out/stream-on")" -v b="$(cat "$out/stream-off")" 'BEGIN { printf "%.2f", a / b }')"
rm -rf "$out"
