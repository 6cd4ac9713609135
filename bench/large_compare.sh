#!/usr/bin/env bash
# Large malloc/free pairs (64 KiB - 4 MiB), spanmap against glibc, jemalloc,
# tcmalloc and mimalloc, each under LD_PRELOAD as a program sees it.
#
#   bench/large_compare.sh [rounds]
#
# Time: alloc_bench's pair/<size> cases, one process per allocator per round,
# the allocators interleaved within each round so a noisy moment spreads over
# all of them; the figure is the median over rounds of the CPU ns per pair, and
# the ratio is glibc's time over each allocator's (above 1: faster than glibc).
# Instructions: callgrind's count for one pair of large_pair, the difference
# between 2000 and 1000 pairs divided by 1000 (start-up and the cold first pair
# drop out). SPANMAP_BEFORE_SO=path adds another build of libspanmap_malloc.so
# as "before", for a before/after in the same run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-$here/../build}
rounds=${1:-7}
bench=$build/bench/alloc_bench
pair=$build/bench/large_pair
sizes=(65536 262144 1048576 4194304)
for f in "$bench" "$pair" "$build/alloc/libspanmap_malloc.so"; do
  [[ -e $f ]] || { echo "large_compare.sh: $f missing (build alloc_bench, large_pair, spanmap_malloc)" >&2; exit 1; }
done

declare -A lib=([glibc]="" [spanmap]=$build/alloc/libspanmap_malloc.so)
allocs=(glibc spanmap)
if [[ -n ${SPANMAP_BEFORE_SO:-} ]]; then lib[before]=$SPANMAP_BEFORE_SO; allocs+=(before); fi
for peer in jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4 mimalloc:libmimalloc.so.2; do
  IFS=: read -r name so <<<"$peer"
  # awk reads to the end: an early exit can kill ldconfig with SIGPIPE,
  # which pipefail turns into this script's exit status (141).
  p=$(ldconfig -p 2>/dev/null | awk -v so="$so" '$1 == so && p == "" { p = $NF } END { print p }')
  if [[ -n $p ]]; then lib[$name]=$p; allocs+=("$name"); else echo "large_compare.sh: $name skipped ($so not found)" >&2; fi
done

run_as() {  # allocator, command...
  local a=$1; shift
  if [[ -z ${lib[$a]} ]]; then env -u LD_PRELOAD -u SPANMAP_CONF "$@"; else env -u SPANMAP_CONF LD_PRELOAD="${lib[$a]}" "$@"; fi
}

filter="^pair/($(IFS='|'; echo "${sizes[*]}"))\$"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((r = 1; r <= rounds; r++)); do
  for a in "${allocs[@]}"; do
    run_as "$a" "$bench" --benchmark_filter="$filter" --benchmark_min_time=0.2 --benchmark_format=csv 2>/dev/null |
      awk -F, -v a="$a" '$1 ~ /^"pair\// { n = $1; gsub(/"|pair\//, "", n); print a, n, $4 }' >>"$tmp/times"
  done
done

count() {  # allocator size pairs -> instructions
  local out=$tmp/cg.$1.$2.$3
  run_as "$1" valgrind --tool=callgrind --callgrind-out-file="$out" "$pair" "$2" "$3" >/dev/null 2>&1 || true
  awk '/^summary:/ { print $2 }' "$out"
}
if command -v valgrind >/dev/null; then
  for a in "${allocs[@]}"; do
    for s in "${sizes[@]}"; do
      echo "$a $s $(( ($(count "$a" "$s" 2000) - $(count "$a" "$s" 1000)) / 1000 ))" >>"$tmp/instr"
    done
  done
fi

printf 'large pairs: median of %d rounds, CPU ns per malloc/free pair (ratio: glibc / allocator, above 1 is faster)\n' "$rounds"
printf '%-10s' allocator; for s in "${sizes[@]}"; do printf '%18s' "$s"; done; echo
for a in "${allocs[@]}"; do
  printf '%-10s' "$a"
  for s in "${sizes[@]}"; do
    med() { awk -v a="$1" -v s="$2" '$1 == a && $2 == s { print $3 }' "$tmp/times" | sort -g |
            awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
    t=$(med "$a" "$s"); g=$(med glibc "$s")
    if [[ -n $t && -n $g ]]; then printf '%10.1f (%4.2f)' "$t" "$(awk -v g="$g" -v t="$t" 'BEGIN { print g / t }')"
    else printf '%18s' n/a; fi
  done
  echo
done
if [[ -s $tmp/instr ]]; then
  echo
  echo 'instructions per pair (callgrind, large_pair)'
  printf '%-10s' allocator; for s in "${sizes[@]}"; do printf '%10s' "$s"; done; echo
  for a in "${allocs[@]}"; do
    printf '%-10s' "$a"
    for s in "${sizes[@]}"; do printf '%10s' "$(awk -v a="$a" -v s="$s" '$1 == a && $2 == s { print $3 }' "$tmp/instr")"; done
    echo
  done
fi
