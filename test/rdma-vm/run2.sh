#!/usr/bin/env bash
# Two Soft-RoCE hosts: two guests of setup-guest.sh's image, joined by an Ethernet link that QEMU
# carries as UDP datagrams on 127.0.0.1, one /bin/sh command in each.
#
#   test/rdma-vm/run2.sh [-w RWDIR] -- 'COMMAND FOR A' -- 'COMMAND FOR B'
#
# A is 192.0.2.1 (guest-a), B is 192.0.2.2 (guest-b), each with rxe0 on its virtio-net NIC eth0.
# Each command runs as run.sh's does (chrooted into the host's / read-only, in the current
# directory), with RWDIR (default: the current directory) read-write in BOTH guests, so the two
# can leave files there for each other (barriers, results).  Inside: SELF and PEER (addresses),
# GUEST (a or b), RW (RWDIR).
#
# Prints both consoles as they come, each line prefixed "A|" or "B|", and exits 0 only if both
# commands exit 0; otherwise A's status if not 0, else B's; 125 when a guest reported none (boot
# failure, crash, timeout).  Once one guest has ended, the other gets VTOE_2H_GRACE seconds
# (default 120) before it is stopped, so a command waiting for a peer that died cannot hold the run.
# 123: the bed failed, not the commands: a guest's NIC stopped transmitting (see below); the run
# may be repeated.
#
# Environment: VTOE_RXE_GUEST (default /tmp/vtoe-rxe-guest), VTOE_2H_TIMEOUT (seconds per guest,
# default 600), VTOE_2H_GRACE, VTOE_2H_MEM (default 768M), VTOE_2H_SMP (default 1: two guests on
# a 2-core machine), VTOE_2H_LINK_BUF (bytes of socket buffer at each end of the link, default
# 4 MiB: link-socket.py).
set -uo pipefail

guest=${VTOE_RXE_GUEST:-/tmp/vtoe-rxe-guest}
here=$(cd "$(dirname "$0")" && pwd)
rwdir=$PWD
while [ $# -gt 0 ]; do
  case $1 in
    -w) [ $# -ge 2 ] || { echo "run2.sh: -w needs a directory" >&2; exit 125; }
        rwdir=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "run2.sh: unknown option $1" >&2; exit 125 ;;
  esac
done
[ $# -eq 3 ] && [ "$2" = -- ] && [ -n "$1" ] && [ -n "$3" ] ||
  { echo "usage: run2.sh [-w RWDIR] -- 'COMMAND FOR A' -- 'COMMAND FOR B'" >&2; exit 125; }
cmd_a=$1 cmd_b=$3
rwdir=$(cd "$rwdir" && pwd -P) || exit 125
for f in vmlinux initrd.cpio; do
  [ -f "$guest/$f" ] || { echo "run2.sh: $guest/$f missing; run test/rdma-vm/setup-guest.sh" >&2; exit 125; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run2.sh: qemu-system-x86_64 not installed" >&2; exit 125; }

work=$(mktemp -d /tmp/vtoe-2h.XXXXXX) || exit 125
pids=()
cleanup() { # our own QEMUs only (by their pid files), then their console pipelines
  local g p
  for g in a b; do
    p=$(cat "$work/$g/qemu.pid" 2>/dev/null) || continue
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = qemu-system-x86 ] && kill "$p" 2>/dev/null
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
free_udp_port() { # from a random start below the ephemeral range, the first one nobody holds
  local p=$((20000 + RANDOM % 12000))
  while ss -Huan "( sport = :$p )" | grep -q .; do p=$((p + 1)); done
  echo "$p"
}

prepare() { # g self peer command
  local ctl=$work/$1
  mkdir -p "$ctl"
  printf '%s/24 guest-%s\n' "$2" "$1" > "$ctl/net"
  printf '%s' "$rwdir" > "$ctl/rwdir"
  {
    printf 'cd %s || exit 125\n' "$(shq "$PWD")"
    printf 'export SELF=%s PEER=%s GUEST=%s RW=%s\n' "$2" "$3" "$1" "$(shq "$rwdir")"
    printf '%s\n' "$4"
  } > "$ctl/cmd.sh"
}
prepare a 192.0.2.1 192.0.2.2 "$cmd_a"
prepare b 192.0.2.2 192.0.2.1 "$cmd_b"

# The link: each QEMU sends its NIC's frames as datagrams to the other's port (no start order),
# through a socket link-socket.py opened with buffers large enough that none is dropped.
port_a=$(free_udp_port)
port_b=$(free_udp_port)
[ "$port_a" != "$port_b" ] || port_b=$((port_a + 1))

boot() { # g local-port remote-port mac
  local g=$1 G=${1^^} ctl=$work/$1
  timeout -k 5 "${VTOE_2H_TIMEOUT:-600}" python3 "$here/link-socket.py" "$2" "$3" -- qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp "${VTOE_2H_SMP:-1}" -m "${VTOE_2H_MEM:-768M}" \
    -nographic -no-reboot -pidfile "$ctl/qemu.pid" \
    -netdev dgram,id=n0,local.type=fd,local.str=3 -device "virtio-net-pci,netdev=n0,mac=$4,romfile=" \
    -kernel "$guest/vmlinux" -initrd "$guest/initrd.cpio" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1" \
    -virtfs local,path=/,mount_tag=vtoe_root,security_model=none,readonly=on,multidevs=remap,id=vtoe_root \
    -virtfs local,path="$rwdir",mount_tag=vtoe_rw,security_model=none,multidevs=remap,id=vtoe_rw \
    -virtfs local,path="$ctl",mount_tag=vtoe_ctl,security_model=none,readonly=on,id=vtoe_ctl \
    </dev/null 2>&1 |
    sed -u -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' |
    while IFS= read -r line; do # (bash, not awk: mawk would hold a pipe's lines back)
      if [[ $line =~ VTOE-RXE-EXIT\ ([0-9]+)$ ]]; then
        echo "${BASH_REMATCH[1]}" > "$ctl/status"
        line=${line%VTOE-RXE-EXIT *}
      fi
      # QEMU's virtio-net, under TCG, has stopped taking this guest's frames now and then under
      # heavy rxe traffic (the guest's watchdog then repeats every 5 s, for good): a fault of the
      # bed, not of the program under test, so both guests stop at once (status 123).
      if [[ $line =~ NETDEV\ WATCHDOG.*timed\ out\ ([0-9]+)\ ms ]] && [ "${BASH_REMATCH[1]}" -ge 10000 ] &&
         [ ! -e "$work/nic_stalled" ]; then
        echo "$G" > "$work/nic_stalled"
        kill "$(cat "$work/a/qemu.pid")" "$(cat "$work/b/qemu.pid")" 2>/dev/null
      fi
      [[ $line =~ ^SeaBIOS\ \(version || $line == *"reboot: Power down" ]] && continue
      line=${line#Booting from ROM..}
      [ -n "$line" ] && printf '%s| %s\n' "$G" "$line"
    done
  echo "${PIPESTATUS[0]}" > "$ctl/qemu_rc"
}

boot a "$port_a" "$port_b" 52:54:00:00:00:01 &
pids+=($!)
boot b "$port_b" "$port_a" 52:54:00:00:00:02 &
pids+=($!)
wait -n "${pids[@]}"
grace=${VTOE_2H_GRACE:-120}
for _ in $(seq "$((grace * 10))"); do
  kill -0 "${pids[0]}" 2>/dev/null || kill -0 "${pids[1]}" 2>/dev/null || break
  sleep 0.1
done
for g in a b; do
  if [ ! -e "$work/$g/qemu_rc" ] && [ -s "$work/$g/qemu.pid" ]; then
    echo "run2.sh: ${g^^} still running ${grace}s after its peer ended; stopping it" >&2
    kill "$(cat "$work/$g/qemu.pid")" 2>/dev/null
  fi
done
wait "${pids[@]}"
pids=()

if [ -s "$work/nic_stalled" ]; then
  echo "run2.sh: bed fault: $(cat "$work/nic_stalled")'s virtio-net stopped transmitting for 10 s (the guest kernel's NETDEV WATCHDOG); both guests stopped" >&2
  exit 123
fi
rc=0
for g in a b; do
  if [ -s "$work/$g/status" ]; then
    s=$(cat "$work/$g/status")
  else
    echo "run2.sh: ${g^^} reported no exit status (qemu exit $(cat "$work/$g/qemu_rc" 2>/dev/null))" >&2
    s=125
  fi
  [ "$rc" = 0 ] && [ "$s" != 0 ] && rc=$s
done
exit "$rc"
