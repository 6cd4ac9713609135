#!/usr/bin/env bash
# The preload library's dynamic dependencies: the C library and the dynamic
# loader alone, so that preloading it into a C program loads no C++ runtime,
# no libgcc_s and no libunwind (the heap profiler opens libunwind itself).
# Usage: needed.sh <libspanmap_malloc.so>
set -euo pipefail
lib=$1
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "NEEDED: $(echo $needed)"
bad=0
for n in $needed; do
  case $n in
    libc.so.*|ld-linux*.so.*) ;;
    *) echo "$lib needs $n" >&2; bad=1 ;;
  esac
done
[[ -n $needed ]] || { echo "no NEEDED entries read from $lib" >&2; exit 1; }
exit $bad
