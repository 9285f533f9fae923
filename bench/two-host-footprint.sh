#!/bin/sh
# What idle offloaded connections between two hosts cost each host: queue pairs, registered
# memory, the agent's fds and RSS, and the host's MemAvailable, at each count in LEVELS (default
# "100 250 500 1000").  A (the client, a Python process holding every connection) and B (the
# server) are two Soft-RoCE guests; run from the repository's root:
#   key=$(mktemp -d); head -c 32 /dev/urandom > $key/key; chmod 600 $key/key
#   test/rdma-vm/run2.sh -w $key -- 'sh bench/two-host-footprint.sh' -- 'sh bench/two-host-footprint.sh'
# Each host prints one line per count:
#   FOOT <host> <count> qps=... mrs(n,MiB)=... agent_fds=... agent_rss_kb=... memavail_kb=...
#        pinned(bytes,limit,ends,refused)=... stats(offloaded,open,fallbacks)=...
# Agent settings come from the environment (VTOE_PINNED_MAX, VTOE_RING_SIZE, ...).
set -u
. test/rdma-vm/two-host-lib.sh
levels=${LEVELS:-100 250 500 1000}
ulimit -n 65536
start_agent
measure() { # label
  qps=$(rdma res show qp 2>/dev/null | grep -c 'lqpn')
  mrs=$(rdma res show mr 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="mrlen") s+=$(i+1); n++} END {printf "%d,%.1f", n, s/1048576}')
  fds=$(ls /proc/$agent/fd | wc -l)
  rss=$(awk '/VmRSS/ {print $2}' /proc/$agent/status)
  avail=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  st=$($vtoe stats --json | python3 -c '
import json, sys
s = json.load(sys.stdin); p = s["pinned"] or {}
print("pinned(bytes,limit,ends,refused)=%s,%s,%s,%s stats(offloaded,open,fallbacks)=%d,%d,%s" % (
    p.get("bytes"), p.get("limit"), p.get("ends"), p.get("refused"), s["offloaded"], s["connections"]["open"],
    json.dumps(s["fallback"]["reasons"]).replace(" ", "")))')
  echo "FOOT $GUEST $1 qps=$qps mrs(n,MiB)=$mrs agent_fds=$fds agent_rss_kb=$rss memavail_kb=$avail $st"
}
# At each count: wait for the file $RW/$1<count> (or the client's end), measure, then run `$2 <count>`.
measure_each() {
  for n in $levels; do
    wait_for "[ -e $RW/$1$n ] || [ -e $RW/a.closing ]" 900
    [ -e "$RW/a.closing" ] && break
    measure "$n"; $2 "$n"
  done
}
b_measured() { mark "m$1"; }
a_measured() { touch "$RW/a.measured$1"; }
measure 0
if [ "$GUEST" = b ]; then
  LD_PRELOAD=$shim python3 -c '
import os, socket, sys
rw = sys.argv[1]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 7000)); s.listen(1024)
s.settimeout(1.0)
open(rw + "/b.listening", "w").close()
conns = []
while not os.path.exists(rw + "/a.closing"):
    try:
        conns.append(s.accept()[0])
    except socket.timeout:
        pass
print("B accepted", len(conns), flush=True)
' "$RW" &
  server=$!
  measure_each a.c b_measured
  wait $server
else
  peer_mark listening
  LD_PRELOAD=$shim python3 -c '
import errno, os, socket, sys, time
rw, peer, levels = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3].split()]
def wait_file(path):
    while not os.path.exists(path):
        time.sleep(0.1)
conns, t0, err = [], time.time(), None
for n in levels:
    while len(conns) < n:
        c = socket.socket()
        try:
            c.connect((peer, 7000)); c.send(b"x"); conns.append(c)
        except OSError as e:
            err = errno.errorcode.get(e.errno, e.errno); break
    print("A connected", len(conns), "in %.1f s" % (time.time() - t0), "error", err, flush=True)
    if err:
        break
    open(rw + "/a.c%d" % n, "w").close()
    wait_file(rw + "/b.m%d" % n)
    open(rw + "/a.m%d" % n, "w").close()
    wait_file(rw + "/a.measured%d" % n)
open(rw + "/a.closing", "w").close()
' "$RW" "$PEER" "$levels" &
  client=$!
  measure_each a.m a_measured
  wait $client
fi
mark done
peer_mark done 900
# Every connection closed: the agent's connections go once their TIMEWAIT ends.
wait_for "[ \"\$($vtoe stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pinned\"][\"ends\"])')\" = 0 ]" 120
measure closed
stop_agent
