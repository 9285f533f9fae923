#!/bin/busybox sh
# PID 1 of the Soft-RoCE test guest (copied to /init by setup-guest.sh).
#
# 1. basic mounts, kernel modules, the control share (/vtoe-ctl, written by run.sh or run2.sh);
#    rxe0 on dummy0 = 192.0.2.1/24 (one guest), or, when /vtoe-ctl/net says "ADDR/PREFIX NAME",
#    on the virtio-net NIC that joins this guest to its peer (two hosts, run2.sh);
# 2. the host's / over 9p (read-only) at /host, fresh tmpfs on /tmp and /run, the read-write
#    directory over it all at its own path (a host directory under /tmp is visible only as RWDIR);
# 3. runs /vtoe-ctl/cmd.sh (written by run.sh) chrooted into /host;
# 4. prints "VTOE-RXE-EXIT <status>" on the console, which run.sh turns into its own exit status;
# 5. powers the VM off.
/bin/busybox --install -s /usr/bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "vtoe-guest: $*"; }
die() { log "$*"; echo "VTOE-RXE-EXIT 125"; sync; poweroff -f; reboot -f; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp

for m in crc32_generic rdma_rxe rdma_ucm ib_umad dummy virtio_pci virtio_net 9pnet_virtio 9p sch_netem; do
  modprobe "$m" || log "modprobe $m failed"
done

opts=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /vtoe-ctl /host
mount -t 9p -o $opts,cache=none vtoe_ctl /vtoe-ctl || die "cannot mount the control share"

ip link set lo up
if [ -f /vtoe-ctl/net ]; then
  # One of two hosts: the RoCE device sits on the NIC whose far end is the peer guest's.
  read -r addr name < /vtoe-ctl/net || die "unreadable /vtoe-ctl/net"
  hostname "$name"
  nic=
  for d in /sys/class/net/*; do
    [ "$(readlink "$d/device/driver" 2>/dev/null | sed 's,.*/,,')" = virtio_net ] && { nic=${d##*/}; break; }
  done
  [ -n "$nic" ] || die "no virtio-net NIC"
  ip addr add "$addr" dev "$nic"
  ip link set "$nic" up
else
  # rdma_cm cannot resolve routes on lo, so the RoCE device sits on a dummy interface with a
  # real address. There is no NIC in the VM; the address is private to the guest.
  nic=dummy0
  ip link add dummy0 type dummy 2>/dev/null
  ip addr add 192.0.2.1/24 dev dummy0
  ip link set dummy0 up
fi
rdma link add rxe0 type rxe netdev "$nic" || die "rdma link add rxe0 failed"
mount -t 9p -o $opts,cache=loose,ro vtoe_root /host || die "cannot mount the host root"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount --bind /dev /host/dev
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
# Mounted last, so that a directory under /tmp or /run is not hidden by the tmpfs there.
rwdir=$(cat /vtoe-ctl/rwdir)
if [ -n "$rwdir" ]; then
  [ -d "/host$rwdir" ] || mkdir -p "/host$rwdir"
  mount -t 9p -o $opts,cache=mmap vtoe_rw "/host$rwdir" || die "cannot mount $rwdir read-write"
fi
cp /vtoe-ctl/cmd.sh /host/tmp/vtoe-cmd.sh

log "rxe0 up after $(cut -d' ' -f1 /proc/uptime)s"
HOME=/root chroot /host /bin/sh /tmp/vtoe-cmd.sh </dev/null >/dev/console 2>&1
status=$?
sync
echo "VTOE-RXE-EXIT $status"
poweroff -f
reboot -f
