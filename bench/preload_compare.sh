#!/usr/bin/env bash
# Runs chosen alloc_bench cases for every allocator under LD_PRELOAD (glibc
# with nothing preloaded, jemalloc, tcmalloc, mimalloc, spanmap, and any
# extra spanmap builds named on the command line, e.g. the build before a
# change), R rounds, each round in a new random order of allocators, and
# prints per case the median per_op (ns per operation, see alloc_bench.cpp)
# and the ratio of the best peer to each spanmap (above 1: spanmap is faster).
# One run holds every figure, so the ratios compare the same machine state.
#
#   bench/preload_compare.sh [-r ROUNDS] [-f FILTER] [-b BUILD] [name=path/to/libspanmap_malloc.so ...]
#
# Defaults: 7 rounds, the batch cases of 16 B to 1 KiB and the pairs of 16 and
# 256 B, build/. Peers are found as bench/run.sh finds them (ldconfig); a
# missing one is skipped.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
rounds=7
filter='^(batch_(lifo|fifo|random)/(16|64|256|1024)|pair/(16|256))$'
build=$here/../build
while getopts r:f:b: opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    f) filter=$OPTARG ;;
    b) build=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))

bin=$build/bench/alloc_bench
[[ -x $bin ]] || { echo "preload_compare.sh: no $bin (build alloc_bench first)" >&2; exit 1; }

declare -A lib=([glibc]="" [spanmap]="$build/alloc/libspanmap_malloc.so")
for peer in jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4 mimalloc:libmimalloc.so.2; do
  # awk reads to the end: an early exit can kill ldconfig with SIGPIPE,
  # which pipefail turns into this script's exit status (141).
  p=$(ldconfig -p | awk -v so="${peer#*:}" '$1 == so && p == "" { p = $NF } END { print p }')
  [[ -n $p ]] && lib[${peer%%:*}]=$p || echo "skipping ${peer%%:*}: ${peer#*:} not found" >&2
done
spanmaps=(spanmap)
for arg in "$@"; do
  lib[${arg%%=*}]=${arg#*=}
  spanmaps+=("${arg%%=*}")
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((r = 0; r < rounds; r++)); do
  for name in $(printf '%s\n' "${!lib[@]}" | shuf); do
    LD_PRELOAD=${lib[$name]} "$bin" --benchmark_filter="$filter" --benchmark_min_time=0.2 \
      --benchmark_format=json >"$out/$name.$r.json" 2>/dev/null
  done
done

python3 - "$out" "$rounds" "${spanmaps[*]}" <<'EOF'
import json, os, statistics, sys
out, rounds, spanmaps = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
t = {}
for f in os.listdir(out):
    name = f.split(".")[0]
    for b in json.load(open(os.path.join(out, f)))["benchmarks"]:
        if "per_op" in b:
            t.setdefault((b["name"], name), []).append(b["per_op"] * 1e9)
# Cases without a size (realloc_growth, workload/maps_strings) sort first in
# their group.
def case_key(c):
    parts = c.split("/")
    return (parts[0], int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0, c)
cases = sorted({c for c, _ in t}, key=case_key)
alloc = sorted({a for _, a in t}, key=lambda a: (a in spanmaps, a))
peers = [a for a in alloc if a not in spanmaps and a != "glibc"]
print(f"median of {rounds} rounds, ns per op (lower is better); best/x = best of {', '.join(peers)} over x")
print(f"{'case':22}" + "".join(f"{a:>12}" for a in alloc) + "".join(f"{'best/' + s:>14}" for s in spanmaps))
for c in cases:
    m = {a: statistics.median(t[(c, a)]) for a in alloc if (c, a) in t}
    best = min(m[a] for a in peers if a in m)
    print(f"{c:22}" + "".join(f"{m.get(a, float('nan')):12.2f}" for a in alloc)
          + "".join(f"{best / m[s]:14.2f}" for s in spanmaps))
EOF
