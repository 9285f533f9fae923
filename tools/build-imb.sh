#!/usr/bin/env bash
# Builds the Intel MPI Benchmarks' IMB-MPI1 (BSD-3-Clause, not packaged by Debian) once per
# installed MPI, into tools/bin/IMB-MPI1.openmpi (mpicc.openmpi) and tools/bin/IMB-MPI1.mpich
# (mpicc.mpich), for `vtoe bench --workloads imb` and the tests.
#
#   tools/build-imb.sh [SOURCE]
#
# SOURCE is an mpi-benchmarks tarball (.tar.gz, as `git archive` or GitHub makes it) or an
# unpacked source directory.  Without it, the tarball in ../shared/third_party/ next to the
# project is used when present (CI's copy); when there is none the script says so and exits 0.
# A binary already built from the same source (its SHA-256, kept next to the binary) is kept, so
# a second run takes a moment.  Each build is in a fresh temporary copy (about 25 s per MPI).
# Reports go to stderr.  Exit status: 0 built, already built, or nothing to build from; 1 a build
# failed, the SOURCE given is unusable, or a SOURCE was given and no MPI is installed.
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
bin=$tools/bin
say() { echo "build-imb: $*" >&2; }

given=${1:-}
if [ -n "$given" ]; then
  [ -e "$given" ] || { say "$given does not exist"; exit 1; }
  src=$(realpath "$given")
else
  # the newest mpi-benchmarks tarball in ../shared/third_party, if there is one
  src=$(ls -1 "$tools"/../../shared/third_party/mpi-benchmarks-*.tar.gz 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$src" ]; then
    have=$(ls "$bin"/IMB-MPI1.* 2>/dev/null | grep -v '\.source$' || true)
    say "no source given and no ../shared/third_party/mpi-benchmarks-*.tar.gz: nothing built${have:+ (kept: $(echo $have))}."
    say "Give the Intel MPI Benchmarks source: tools/build-imb.sh mpi-benchmarks.tar.gz|DIR (https://github.com/intel/mpi-benchmarks)"
    exit 0
  fi
  src=$(realpath "$src")
fi

# What the binaries were built from: the tarball's SHA-256, or a directory's sources'.
if [ -d "$src" ]; then
  [ -f "$src/Makefile" ] && [ -d "$src/src_cpp" ] || { say "$src is not an mpi-benchmarks source directory (no Makefile and src_cpp/)"; exit 1; }
  id=$(cd "$src" && find . -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name 'Makefile*' -o -name '*.mk' \) -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
else
  case "$src" in *.tar.gz|*.tgz) ;; *) say "$src is neither a .tar.gz nor a directory"; exit 1 ;; esac
  id=$(sha256sum "$src" | cut -d' ' -f1)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
built=0 failed=0 found=0
for flavour in openmpi mpich; do
  out=$bin/IMB-MPI1.$flavour
  if ! command -v "mpicc.$flavour" >/dev/null || ! command -v "mpicxx.$flavour" >/dev/null; then
    say "$flavour: mpicc.$flavour/mpicxx.$flavour not installed, skipped (apt-get install $([ $flavour = openmpi ] && echo 'openmpi-bin libopenmpi-dev' || echo 'mpich libmpich-dev'))"
    continue
  fi
  found=$((found + 1))
  if [ -x "$out" ] && [ "$(cat "$out.source" 2>/dev/null)" = "$id" ]; then
    say "$flavour: $out is already built from $(basename "$src")"
    continue
  fi
  tree=$work/$flavour
  mkdir -p "$tree"
  if [ -d "$src" ]; then
    cp -a "$src/." "$tree/"
  else
    tar xzf "$src" -C "$tree" --strip-components=1
  fi
  make=(make -C "$tree" IMB-MPI1 "CC=mpicc.$flavour" "CXX=mpicxx.$flavour")
  # Open MPI's C++ bindings are deprecated and break IMB's C++ build; MPICH needs nothing
  [ "$flavour" = openmpi ] && make+=("CPPFLAGS=-DOMPI_SKIP_MPICXX=1")
  say "$flavour: building IMB-MPI1 from $(basename "$src") (about 25 s)"
  t0=$(date +%s)
  if ! "${make[@]}" >"$work/$flavour.log" 2>&1 || [ ! -x "$tree/IMB-MPI1" ]; then
    say "$flavour: the build failed; the end of its log:"
    tail -20 "$work/$flavour.log" >&2
    failed=$((failed + 1))
    continue
  fi
  mkdir -p "$bin"
  install -m 755 "$tree/IMB-MPI1" "$out"
  echo "$id" >"$out.source"
  say "$flavour: built $out in $(( $(date +%s) - t0 )) s"
  built=$((built + 1))
done
if [ "$found" = 0 ]; then
  say "no MPI is installed (neither mpicc.openmpi nor mpicc.mpich): nothing built"
  [ -n "$given" ] && exit 1
  exit 0
fi
[ "$failed" = 0 ] || exit 1
