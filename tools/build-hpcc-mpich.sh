#!/usr/bin/env bash
# Builds HPCC for MPICH into tools/bin/hpcc.mpich.  Debian's hpcc package is linked with Open MPI
# only; this builds the same upstream release (Debian's source, hpcc 1.5.0) with mpicc.mpich and
# the reference BLAS.  Needs: mpich libmpich-dev libblas-dev, and Debian's source archive
# (a deb-src entry is added for the download if none exists).  Run as root, from anywhere.
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
out=$tools/bin/hpcc.mpich
[ -x "$out" ] && { echo "build-hpcc-mpich: $out is already built"; exit 0; }
command -v mpicc.mpich >/dev/null || { echo "build-hpcc-mpich: needs mpicc.mpich (apt-get install mpich libmpich-dev)" >&2; exit 1; }

work=$(mktemp -d)
src_list=/etc/apt/sources.list.d/vtoe-deb-src.sources
trap 'rm -rf "$work"' EXIT
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src_list"
  trap 'rm -rf "$work"; rm -f "$src_list"' EXIT
  apt-get update -qq
fi
cd "$work"
# The .dsc names the upstream tarball and its SHA-256; only that tarball is needed.
apt-get source --download-only hpcc >/dev/null 2>&1 || true
dsc=$(ls hpcc_*.dsc 2>/dev/null | head -1)
[ -n "$dsc" ] || { echo "build-hpcc-mpich: could not download hpcc's source from Debian" >&2; exit 1; }
orig=$(sed -n '/^Checksums-Sha256:/,/^[A-Z]/p' "$dsc" | awk '/orig\.tar/ {print $1"  "$3}')
echo "$orig" | sha256sum -c --quiet
tar xzf "$(echo "$orig" | awk '{print $2}')"
cd hpcc-*/
cat > hpl/Make.mpich <<'MAKE'
SHELL        = /bin/sh
CD           = cd
CP           = cp
LN_S         = ln -s
MKDIR        = mkdir
RM           = /bin/rm -f
TOUCH        = touch
ARCH         = mpich
TOPdir       = ../../..
INCdir       = $(TOPdir)/include
BINdir       = $(TOPdir)/bin/$(ARCH)
LIBdir       = $(TOPdir)/lib/$(ARCH)
HPLlib       = $(LIBdir)/libhpl.a
LAlib        = -lblas
F2CDEFS      = -DAdd_ -DF77_INTEGER=int -DStringSunStyle
HPL_INCLUDES = -I$(INCdir) -I$(INCdir)/$(ARCH)
HPL_LIBS     = $(HPLlib) $(LAlib) -lm
HPL_DEFS     = $(F2CDEFS) $(HPL_INCLUDES)
CC           = mpicc.mpich
CCNOOPT      = $(HPL_DEFS)
CCFLAGS      = $(HPL_DEFS) -O2 -w
LINKER       = mpicc.mpich
LINKFLAGS    = $(CCFLAGS)
ARCHIVER     = ar
ARFLAGS      = r
RANLIB       = echo
MAKE
make -s arch=mpich >/dev/null 2>&1 || { echo "build-hpcc-mpich: the build failed (is libblas-dev installed?)" >&2; exit 1; }
install -D -m 755 hpcc "$out"
echo "build-hpcc-mpich: built $out"
