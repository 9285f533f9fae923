#!/bin/sh
# The agent's adaptive polling on the verbs fabric (VTOE_VERBS_SPIN_US), A against B in one
# boot of the one-guest Soft-RoCE bed (2 vCPUs; the agent REQs itself over rxe0): 64 B one-way
# latency through the verbs fabric (vtoe-pingpong pp, half the p50 round trip) with the agent's
# polling off (0) and on (SPIN, default 5000: a window must outlast a round trip to pay, and
# under emulation a round trip takes about a millisecond; on hardware the default 50 covers
# it), alternated ROUNDS times (default 3), each trial with a fresh agent; then one strace of
# each way for the agent's system calls per round trip, and ib_send_lat -R and kernel TCP on
# the same guest for reference.  Run from the repository's root:
#   d=$(mktemp -d); VTOE_RXE_TIMEOUT=900 test/rdma-vm/run.sh -w $d -- sh bench/verbs-spin.sh
# Prints:
#   SPIN <round> <agent-spin-us> <one-way us>
#   SPIN-MEDIAN <agent-spin-us> <us>      SPIN-RATIO on/off <x>
#   SPIN-CALLS <agent-spin-us> <agent system calls per round trip> (<the top calls>)
#   SPIN-REF ib_send_lat <us> kernel-tcp <us>
set -u
repo=$PWD
shim=$repo/preload/libvtoe.so
pp=$repo/tools/bin/vtoe-pingpong
vtoe="node $repo/bin/vtoe.js"
rounds=${ROUNDS:-3}
spin=${SPIN:-5000}
iters=${ITERS:-2000}
port=7300
out=$(mktemp -d)
sock=$out/agent.sock

trial() { # agent-spin-us [strace]: prints the one-way latency
  rm -f "$sock"
  VTOE_FABRIC=verbs VTOE_VERBS_SPIN_US=$1 VTOE_AGENT_SOCKET=$sock $vtoe agent > "$out/agent.log" 2>&1 &
  agent=$!
  until grep -q 'vtoe agent: listening' "$out/agent.log"; do sleep 0.1; done
  VTOE_AGENT_SOCKET=$sock LD_PRELOAD=$shim $pp server --bind 127.0.0.1 --port $port --count 1 > "$out/srv" 2>&1 &
  srv=$!
  until grep -q READY "$out/srv"; do sleep 0.1; done
  if [ $# -gt 1 ]; then
    strace -c -f -p $agent -o "$out/strace" 2> "$out/strace.err" & st=$!
    until grep -q attached "$out/strace.err"; do sleep 0.1; done
  fi
  VTOE_AGENT_SOCKET=$sock LD_PRELOAD=$shim $pp client --host 127.0.0.1 --port $port --mode pp --size 64 --iters $iters |
    sed -n 's/.*"latency_us":\([0-9.]*\).*/\1/p'
  wait $srv
  if [ $# -gt 1 ]; then
    kill -INT $st; wait $st
    # strace -c: % time, seconds, usecs/call, calls, [errors,] syscall; futex is Node's threads
    awk -v n=$iters -v s=$1 '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" && $NF != "futex" { t += $4; if ($4 / n >= 0.5) top = top " " $NF "=" sprintf("%.1f", $4 / n) }
      END { printf "SPIN-CALLS %s %.1f (%s )\n", s, t / n, top }' "$out/strace" >&2
  fi
  stats=$(VTOE_AGENT_SOCKET=$sock $vtoe stats --json | tr -d ' \n')
  kill $agent; wait $agent 2> /dev/null
  # One connection offloaded, and the verbs fabric up (else VTOE_FABRIC=verbs would use shm).
  echo "$stats" | grep -q '"offloaded":1,' && echo "$stats" | grep -q '"verbs":"up' ||
    echo "SPIN-CHECK the trial did not run over the verbs fabric: $stats" >&2
  port=$((port + 1))
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

r=1
while [ $r -le "$rounds" ]; do
  for s in 0 "$spin"; do
    f=$(trial $s)
    echo "SPIN $r $s $f"
    echo "$s $f" >> "$out/figures"
  done
  r=$((r + 1))
done
off=$(awk '$1 == 0 { print $2 }' "$out/figures" | median)
on=$(awk -v s="$spin" '$1 == s { print $2 }' "$out/figures" | median)
echo "SPIN-MEDIAN 0 $off"
echo "SPIN-MEDIAN $spin $on"
awk -v a="$on" -v b="$off" 'BEGIN { printf "SPIN-RATIO on/off %.2f\n", a / b }'
trial 0 strace > /dev/null
trial "$spin" strace > /dev/null

ib_send_lat -R -F -s 64 -n $iters > /dev/null 2>&1 & ib=$!
until rdma res show cm_id 2> /dev/null | grep -q 'LISTEN.*:18515'; do sleep 0.1; done
ibl=$(ib_send_lat -R -F -s 64 -n $iters 192.0.2.1 2>&1 | awk '$1 == 64 && NF >= 6 { print $5 }')
wait $ib
$pp server --bind 127.0.0.1 --port 7399 --count 1 > "$out/srv" 2>&1 & srv=$!
until grep -q READY "$out/srv"; do sleep 0.1; done
tcp=$($pp client --host 127.0.0.1 --port 7399 --mode pp --size 64 --iters $iters | sed -n 's/.*"latency_us":\([0-9.]*\).*/\1/p')
wait $srv
echo "SPIN-REF ib_send_lat $ibl kernel-tcp $tcp"
rm -rf "$out"
