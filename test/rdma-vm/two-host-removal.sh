# DEVICE_REMOVAL across hosts, run by run2.sh in both guests (test/rdma-vm.test.ts): A's RDMA
# device is deleted (`rdma link delete rxe0`) under an offloaded 64 MiB stream from B. Neither end
# may read that as a clean end of stream: A's reader gets ECONNRESET from its agent, B's writer
# ECONNRESET or EPIPE. Then a new connection from B reaches A whole over kernel TCP (no-fabric),
# after B's REQ to A, which has no RDMA device now, went unanswered; so B's next 20 connections
# to A use kernel TCP at once, without another REQ (VTOE_SILENT_HOLD_MS).
# Soft-RoCE finishes the deletion only once A's agent has exited, so this case runs alone.
set -u
. test/rdma-vm/two-host-lib.sh
start_agent
if [ "$GUEST" = a ]; then
  LD_PRELOAD=$shim python3 test/rdma-vm/stream.py recv 6001 removal "$RW" & rx=$!
  wait_for "[ \$(stat -c %s /tmp/removal.bin 2>/dev/null || echo 0) -gt 8000000 ]" 120
  rdma link delete rxe0 & # returns once the agent exits (rdma_rxe cannot disassociate)
  say "removal: device deleted at $(stat -c %s /tmp/removal.bin) bytes"
  wait $rx || fail "removal: the receiver failed"
  peer_mark removal-told 120
  python3 test/rdma-vm/stream.py recv 6002 after-removal "$RW" & rx=$!
  wait $rx || fail "after-removal: the receiver failed"
  tools/bin/vtoe-pingpong server --bind 0.0.0.0 --port 6003 --count 20 > "$RW/silent-server.log" 2>&1 & srv=$!
  wait_for "grep -qi ':1773 0*:0000 0A' /proc/net/tcp" 60
  mark silent-listening
  wait $srv || fail "silent: the server failed"
  echo "RESULT stats $($vtoe stats --json | tr -d '\n')"
  mark done
else
  peer_mark removal-listening
  LD_PRELOAD=$shim python3 test/rdma-vm/stream.py send "$PEER" 6001 removal 67108864 || fail "removal: the sender failed"
  mark removal-told
  peer_mark after-removal-listening
  LD_PRELOAD=$shim python3 test/rdma-vm/stream.py send "$PEER" 6002 after-removal 4194304 || fail "after-removal: the sender failed"
  peer_mark silent-listening
  out=$(LD_PRELOAD=$shim tools/bin/vtoe-pingpong client --host "$PEER" --port 6003 --mode connect --size 64 --iters 20 \
    --warmup 0) || fail "silent: the client failed"
  echo "RESULT silent-connects $out"
  echo "RESULT stats $($vtoe stats --json | tr -d '\n')"
  peer_mark done
fi
