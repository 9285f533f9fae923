#!/bin/sh
# MPI across the two hosts: run by run2.sh in both guests (two-host-lib.sh).  Each host runs its
# own agent; B also serves rsh.sh's launches (rshd.sh on port 2222).  A runs `vtoe bench --hosts`
# for each MPI in MPIS (default "openmpi") and workload in WORKLOADS (default "pingpong imb
# hpcc"): one rank per host, offload against ipoib (kernel TCP over the hosts' link; HPCC,
# which takes most of the time under emulation, through offload only unless HPCC_MODES says
# "offload,ipoib"), REPS
# repetitions (default 1), each run's report in $RW/bench-<mpi>-<workload>/ (results.json,
# summary.md, report.html; --no-charts leaves the PNGs to `vtoe bench --from`, Chromium taking
# up to a minute a chart under emulation).  Lines starting "RESULT " are what test/rdma-vm.test.ts checks:
#   RESULT bench <mpi> <workload> <exit status> <seconds>   vtoe bench's verdict (1: a problem)
# A workload that finished leaves its RESULT line in $RW/bench-<mpi>-<workload>.result; one whose
# line is there already is not run again (a second run after a fault of the bed keeps them).
# MPICH is not in the default: Debian's MPICH 4.0 can hang in MPI_Finalize between hosts, on kernel
# TCP as through vtoe (README, *MPI*); MPIS="openmpi mpich" runs it anyway.
set -u
. test/rdma-vm/two-host-lib.sh

start_agent
if [ "$GUEST" = b ]; then
  socat TCP-LISTEN:2222,reuseaddr,fork EXEC:"sh $repo/test/rdma-vm/rshd.sh" &
  rshd=$!
  wait_for "grep -qi ':08AE 0*:0000 0A' /proc/net/tcp" 30
  mark rshd-up
  peer_mark done 3000
  kill $rshd
else
  peer_mark rshd-up
  for mpi in ${MPIS:-openmpi}; do
    for w in ${WORKLOADS:-pingpong imb hpcc}; do
      done_file=$RW/bench-$mpi-$w.result
      [ -s "$done_file" ] && { cat "$done_file"; continue; }
      modes=offload,ipoib
      [ "$w" = hpcc ] && modes=${HPCC_MODES:-offload}
      t0=$(cut -d' ' -f1 /proc/uptime)
      # from $RW, which both hosts see, as an MPI job's directory is on a cluster
      (cd "$RW" && $vtoe bench --hosts "$SELF,$PEER" --iface eth0 --launcher "$repo/test/rdma-vm/rsh.sh" \
        --mpi "$mpi" --modes "$modes" --workloads "$w" --reps "${REPS:-1}" --max-bytes 65536 \
        --iters 50 --imb-benchmarks PingPong --hpcc-n 200 --report "$RW/bench-$mpi-$w" --no-charts > "$RW/bench-$mpi-$w.md")
      rc=$?
      echo "RESULT bench $mpi $w $rc $(awk -v t0="$t0" '{ printf "%.0f", $1 - t0 }' /proc/uptime)" | tee "$done_file"
    done
  done
  mark done
fi
stop_agent
