#!/usr/bin/env bash
# Prepare a QEMU guest for the Soft-RoCE (rdma_rxe) tests.
#
#   test/rdma-vm/setup-guest.sh [OUT]        (default OUT=/tmp/vtoe-rxe-guest)
#
# Leaves OUT/vmlinux (uncompressed, bootable by QEMU through its PVH note) and OUT/initrd.cpio
# (busybox, the RDMA kernel modules and just enough verbs userspace). The Debian kernel package is
# only unpacked with dpkg -x; the host kernel is not touched. Apt packages for the host side are
# installed when missing. A second run with an up-to-date OUT does nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-${VTOE_RXE_GUEST:-/tmp/vtoe-rxe-guest}}
arch_libdir=/usr/lib/x86_64-linux-gnu

# Kernel modules to load in the guest, in load order. crc32_generic is needed by rdma_rxe's ICRC
# but modinfo does not list it, so it is named explicitly.
guest_modules="crc32_generic rdma_rxe rdma_ucm ib_umad dummy virtio_pci virtio_net 9pnet_virtio 9p sch_netem"

say() { echo "setup-guest: $*" >&2; }

# ---- host packages ---------------------------------------------------------------------------
host_pkgs="qemu-system-x86 busybox-static rdma-core ibverbs-utils ibverbs-providers rdmacm-utils
  perftest kmod cpio iproute2 python3"
missing=()
for p in $host_pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only if the install fails with the lists we have (or there are none).
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# ---- which kernel ----------------------------------------------------------------------------
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1=="Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
if [ -z "$kpkg" ]; then
  apt-get update -q >/dev/null
  kpkg=$(apt-cache depends linux-image-amd64 | awk '$1=="Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
fi
kver=${kpkg#linux-image-}

# Everything that shapes the result goes into a stamp; if it matches, OUT is complete.
stamp="$kver $(sha256sum "$here/guest-init.sh" "$here/setup-guest.sh" | cut -c1-16 | tr '\n' ' ')"
if [ -f "$out/vmlinux" ] && [ -f "$out/initrd.cpio" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  say "guest already prepared in $out ($kver)"
  exit 0
fi
mkdir -p "$out"
rm -f "$out/stamp"

# ---- kernel package --------------------------------------------------------------------------
kroot=$out/kernel
if [ ! -d "$kroot/lib/modules/$kver" ]; then
  say "fetching $kpkg"
  rm -rf "$kroot" "$out/deb"
  mkdir -p "$out/deb"
  chmod 777 "$out/deb"   # apt-get download may drop to the _apt user
  (cd "$out/deb" && apt-get download -q "$kpkg" >/dev/null)
  dpkg -x "$out"/deb/"${kpkg}"_*.deb "$kroot"
  rm -rf "$out/deb"
fi

# bzImage -> vmlinux: Debian compresses with xz; the ELF inside boots directly, which saves the
# guest several seconds of emulated decompression.
python3 - "$kroot/boot/vmlinuz-$kver" "$out/vmlinux.tmp" <<'EOF'
import lzma, sys
blob = open(sys.argv[1], 'rb').read()
start = blob.find(b'\xfd7zXZ\x00')
if start < 0:
    sys.exit('no xz stream in ' + sys.argv[1])
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob[start:])
if elf[:4] != b'\x7fELF':
    sys.exit('decompressed kernel is not an ELF image')
open(sys.argv[2], 'wb').write(elf)
EOF
mv "$out/vmlinux.tmp" "$out/vmlinux"

# ---- initramfs tree --------------------------------------------------------------------------
tree=$out/initrd
rm -rf "$tree"
mkdir -p "$tree"/{dev,proc,sys,tmp,run,mnt,etc,usr/bin,usr/sbin,usr/lib64,$arch_libdir}
ln -s usr/bin "$tree/bin"
ln -s usr/sbin "$tree/sbin"
ln -s usr/lib "$tree/lib"
ln -s usr/lib64 "$tree/lib64"
install -m755 /bin/busybox "$tree/usr/bin/busybox"

# Modules plus everything they depend on, as kmod resolves it against the unpacked kernel.
depmod -b "$kroot" "$kver"
moddir=lib/modules/$kver
for m in $guest_modules; do
  modprobe -d "$kroot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | sort -u | while read -r ko; do
  install -D -m644 "$ko" "$tree/$moddir/${ko#"$kroot/$moddir/"}"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
  cp "$kroot/$moddir/$f" "$tree/$moddir/"
done
depmod -b "$tree" "$kver"

# A program and its shared libraries (resolved by the host's loader; same Debian release).
add_elf() {
  local src=$1 dst=$2 lib
  install -D -m755 "$src" "$tree$dst"
  for lib in $(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    local to=/usr${lib#/usr}
    [ -e "$tree$to" ] || install -D -m755 "$(readlink -f "$lib")" "$tree$to"
  done
}
# The guest's own tools: enough to bring rxe0 up before the host filesystem is mounted.
for b in rdma ip; do add_elf "$(command -v "$b")" "/usr/bin/$b"; done
rxe_provider=$(ls "$arch_libdir"/libibverbs/librxe-rdmav*.so | head -n1)
add_elf "$rxe_provider" "$rxe_provider"
add_elf "$arch_libdir/libgcc_s.so.1" "$arch_libdir/libgcc_s.so.1"   # dlopened by pthread_exit
install -D -m644 /etc/libibverbs.d/rxe.driver "$tree/etc/libibverbs.d/rxe.driver"
install -m755 "$here/guest-init.sh" "$tree/init"

(cd "$tree" && find . -print0 | cpio --null -o -H newc --quiet) > "$out/initrd.cpio.tmp"
mv "$out/initrd.cpio.tmp" "$out/initrd.cpio"
echo "$stamp" > "$out/stamp"
say "guest ready in $out: kernel $kver, initrd $(du -h "$out/initrd.cpio" | cut -f1)"
