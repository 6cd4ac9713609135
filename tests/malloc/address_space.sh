#!/usr/bin/env bash
# The address space a program pays for preloading spanmap, against the same
# program on the C library's malloc.
#   address_space.sh vmsize <libspanmap_malloc.so> <fill_heap>
#     a trivial program's VmSize: within 16 MiB of the C library's;
#   address_space.sh ulimit:<kB> <libspanmap_malloc.so> <fill_heap>
#     under `ulimit -v <kB>`, the 1 MiB blocks fill_heap gets: within 10% of
#     what it gets on the C library.
set -euo pipefail
case_name=$1
preload=$2
fill=$3

# The C library's side runs without any preload, even when the whole suite
# runs under one.
on_glibc() { env -u LD_PRELOAD "$@"; }
on_spanmap() { env LD_PRELOAD="$preload" "$@"; }

maps=$(on_spanmap cat /proc/self/maps)
[[ $maps == *libspanmap_malloc* ]] || { echo "the preload did not take" >&2; exit 1; }

vmsize_kb() { "$@" awk '/^VmSize:/ { print $2 }' /proc/self/status; }

case "$case_name" in
vmsize)
  glibc=$(vmsize_kb on_glibc)
  spanmap=$(vmsize_kb on_spanmap)
  echo "VmSize of awk: glibc ${glibc} kB, spanmap ${spanmap} kB"
  (( spanmap - glibc <= 16 * 1024 )) || { echo "spanmap adds more than 16 MiB of address space" >&2; exit 1; }
  ;;
ulimit:*)
  limit=${case_name#ulimit:}
  glibc=$(ulimit -v "$limit"; on_glibc "$fill")
  spanmap=$(ulimit -v "$limit"; on_spanmap "$fill")
  echo "under ulimit -v $limit: glibc $glibc MiB, spanmap $spanmap MiB of 1 MiB blocks"
  (( glibc > 0 )) || { echo "the C library got no heap: the limit is too low for this test" >&2; exit 1; }
  (( spanmap * 10 >= glibc * 9 )) || { echo "spanmap's heap is more than 10% below the C library's" >&2; exit 1; }
  ;;
*)
  echo "unknown case $case_name" >&2
  exit 2
  ;;
esac
