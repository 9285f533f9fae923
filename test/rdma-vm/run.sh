#!/usr/bin/env bash
# Run a command inside the Soft-RoCE guest prepared by setup-guest.sh.
#
#   test/rdma-vm/run.sh [-w RWDIR] -- CMD ARGS...
#
# The guest (Debian's kernel under QEMU/TCG, 2 vCPUs, no NIC) has an rxe0 RoCE device on dummy0
# (192.0.2.1/24). CMD runs chrooted into the host's filesystem, mounted read-only over 9p, with
# RWDIR (default: the current directory) mounted read-write at its own path, in the current
# directory. Prints the guest console (CMD's output), exits with CMD's status, or with 125 if the
# guest never reported one (boot failure, crash, timeout).
#
# Environment: VTOE_RXE_GUEST (guest dir, default /tmp/vtoe-rxe-guest), VTOE_RXE_TIMEOUT (seconds,
# default 300), VTOE_RXE_MEM (default 1G), VTOE_RXE_SMP (default 2).
set -uo pipefail

guest=${VTOE_RXE_GUEST:-/tmp/vtoe-rxe-guest}
rwdir=$PWD
while [ $# -gt 0 ]; do
  case $1 in
    -w) [ $# -ge 2 ] || { echo "run.sh: -w needs a directory" >&2; exit 125; }
        rwdir=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 125 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: run.sh [-w RWDIR] -- CMD ARGS..." >&2; exit 125; }
rwdir=$(cd "$rwdir" && pwd -P) || exit 125
for f in vmlinux initrd.cpio; do
  [ -f "$guest/$f" ] || { echo "run.sh: $guest/$f missing; run test/rdma-vm/setup-guest.sh" >&2; exit 125; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run.sh: qemu-system-x86_64 not installed" >&2; exit 125; }

ctl=$(mktemp -d /tmp/vtoe-rxe-ctl.XXXXXX) || exit 125
trap 'rm -rf "$ctl"' EXIT

# The guest's /bin/sh is the host's (dash), so quote with single quotes rather than printf %q.
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
  printf 'cd %s || exit 125\nexec' "$(shq "$PWD")"
  for a in "$@"; do printf ' %s' "$(shq "$a")"; done
  printf '\n'
} > "$ctl/cmd.sh"
printf '%s' "$rwdir" > "$ctl/rwdir"

timeout -k 5 "${VTOE_RXE_TIMEOUT:-300}" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -smp "${VTOE_RXE_SMP:-2}" -m "${VTOE_RXE_MEM:-1G}" \
  -nographic -no-reboot -nic none \
  -kernel "$guest/vmlinux" -initrd "$guest/initrd.cpio" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1" \
  -virtfs local,path=/,mount_tag=vtoe_root,security_model=none,readonly=on,multidevs=remap,id=vtoe_root \
  -virtfs local,path="$rwdir",mount_tag=vtoe_rw,security_model=none,multidevs=remap,id=vtoe_rw \
  -virtfs local,path="$ctl",mount_tag=vtoe_ctl,security_model=none,readonly=on,id=vtoe_ctl \
  </dev/null 2>&1 |
  tr -d '\r' |
  sed -u -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' |
  awk -v statusfile="$ctl/status" '
    match($0, /VTOE-RXE-EXIT [0-9]+$/) {
      if (RSTART > 1) print substr($0, 1, RSTART - 1)
      split(substr($0, RSTART), w, " "); print w[2] > statusfile; close(statusfile)
      fflush(); next
    }
    # firmware banner and the final power-off message are noise
    /^SeaBIOS \(version/ || /^\[ *[0-9.]+\] reboot: Power down$/ { next }
    { if (sub(/^Booting from ROM\.\./, "") && $0 == "") next; print; fflush() }'
qemu_rc=${PIPESTATUS[0]}

if [ ! -s "$ctl/status" ]; then
  if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    echo "run.sh: guest timed out after ${VTOE_RXE_TIMEOUT:-300}s" >&2
  else
    echo "run.sh: guest reported no exit status (qemu exit $qemu_rc)" >&2
  fi
  exit 125
fi
exit "$(cat "$ctl/status")"
