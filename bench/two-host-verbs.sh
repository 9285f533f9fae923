#!/bin/sh
# The verbs fabric between two hosts against the raw verbs tools, in one boot of the two-host
# bed: 64 B one-way latency and a 64 KiB stream, each through offload (vtoe-pingpong under the
# shim, the hosts' agents joined over RDMA), over kernel TCP (the same program without the
# shim) and with perftest over rdma_cm (ib_send_lat -R, ib_write_bw -R).  ROUNDS rounds
# (default 3) run every way once, in turn, each in fresh processes.  Run from the repository's
# root:
#   key=$(mktemp -d); head -c 32 /dev/urandom > $key/key; chmod 600 $key/key
#   test/rdma-vm/run2.sh -w $key -- 'sh bench/two-host-verbs.sh' -- 'sh bench/two-host-verbs.sh'
# A, the client, prints each figure as it comes, then the medians and the ratios:
#   VERBS <round> <way> <figure>        latency: one-way us (ib_send_lat's t_typical; half the
#                                       p50 round trip of vtoe-pingpong); stream: MiB/s
#   VERBS-MEDIAN <way> <figure>
#   VERBS-RATIO latency offload/ib_send_lat <x> (goal <= 2)  stream offload/ib_write_bw <x> (goal >= 0.7) ...
#   VERBS-CHECK offloaded=<n> fallbacks=<json>   A's agent: every offload run went over the fabric
# ITERS (default 1000) round trips per latency run; STREAM_S (default 5) seconds per stream.
set -u
. test/rdma-vm/two-host-lib.sh
rounds=${ROUNDS:-3}
iters=${ITERS:-1000}
stream_s=${STREAM_S:-5}
ways="ib-lat offload-lat tcp-lat ib-bw offload-bw tcp-bw"
pp=$repo/tools/bin/vtoe-pingpong
port=7100

start_agent
# perftest's rdma_cm port, listening (the agents' own rdma_cm listeners use others)
perftest_listening() { rdma res show cm_id 2>/dev/null | grep -q 'LISTEN.*:18515'; }

serve() { # round way: B's server for one run, up before A starts, gone once A is done
  case $2 in
    ib-lat) ib_send_lat -R -F -s 64 -n "$iters" > /dev/null 2>&1 & ready=perftest_listening ;;
    ib-bw) ib_write_bw -R -F -s 65536 -D "$stream_s" > /dev/null 2>&1 & ready=perftest_listening ;;
    offload-*) LD_PRELOAD=$shim "$pp" server --bind 0.0.0.0 --port $port --count 1 > "$RW/srv.out" 2>&1 & ready="grep -q READY $RW/srv.out" ;;
    tcp-*) "$pp" server --bind 0.0.0.0 --port $port --count 1 > "$RW/srv.out" 2>&1 & ready="grep -q READY $RW/srv.out" ;;
  esac
  srv=$!
  wait_for "$ready" 120
  mark "ready-$1-$2"
  wait $srv || fail "the $2 server of round $1 failed"
  rm -f "$RW/srv.out"
}

run() { # round way: A's client; prints the figure
  case $2 in
    ib-lat) ib_send_lat -R -F -s 64 -n "$iters" "$PEER" 2>&1 | awk '$1 == 64 && NF >= 6 { print $5 }' ;;
    ib-bw) ib_write_bw -R -F -s 65536 -D "$stream_s" "$PEER" 2>&1 | awk '$1 == 65536 && NF >= 4 { print $4 }' ;;
    offload-lat) LD_PRELOAD=$shim "$pp" client --host "$PEER" --port $port --mode pp --size 64 --iters "$iters" | sed -n 's/.*"latency_us":\([0-9.]*\).*/\1/p' ;;
    tcp-lat) "$pp" client --host "$PEER" --port $port --mode pp --size 64 --iters "$iters" | sed -n 's/.*"latency_us":\([0-9.]*\).*/\1/p' ;;
    offload-bw) LD_PRELOAD=$shim "$pp" client --host "$PEER" --port $port --mode stream --size 65536 --seconds "$stream_s" | sed -n 's/.*"mib_per_s":\([0-9.]*\).*/\1/p' ;;
    tcp-bw) "$pp" client --host "$PEER" --port $port --mode stream --size 65536 --seconds "$stream_s" | sed -n 's/.*"mib_per_s":\([0-9.]*\).*/\1/p' ;;
  esac
}

median() { # way: the median of its figures in $RW/figures
  awk -v w="$1" '$2 == w { print $3 }' "$RW/figures" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

r=1
while [ $r -le "$rounds" ]; do
  for w in $ways; do
    if [ "$GUEST" = b ]; then
      serve $r $w
    else
      peer_mark "ready-$r-$w" 300
      f=$(run $r $w)
      [ -n "$f" ] || fail "no figure from the $w run of round $r"
      echo "VERBS $r $w $f"
      echo "$r $w $f" >> "$RW/figures"
    fi
  done
  r=$((r + 1))
done

if [ "$GUEST" = a ]; then
  for w in $ways; do echo "VERBS-MEDIAN $w $(median $w)"; done
  awk -v ol="$(median offload-lat)" -v il="$(median ib-lat)" -v tl="$(median tcp-lat)" \
      -v ob="$(median offload-bw)" -v ib="$(median ib-bw)" -v tb="$(median tcp-bw)" 'BEGIN {
    printf "VERBS-RATIO latency offload/ib_send_lat %.2f (goal <= 2), offload/kernel TCP %.2f; ", ol / il, ol / tl
    printf "stream offload/ib_write_bw %.2f (goal >= 0.7), offload/kernel TCP %.2f\n", ob / ib, ob / tb }'
  $vtoe stats --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("VERBS-CHECK offloaded=%d fallbacks=%s" % (s["offloaded"], json.dumps(s["fallback"]["reasons"]).replace(" ", "")))'
  mark done
else
  peer_mark done 600
fi
stop_agent
