#!/usr/bin/env bash
# Runs malloc_bench once, with repetitions, and prints per size the median CPU time
# of a malloc/free pair for each allocator and the ratios glibc/spanmap and
# jemalloc/spanmap (above 1: spanmap is faster). Every figure comes from that
# one run; its raw results are kept in bench/out/.
#
#   bench/compare.sh [path/to/malloc_bench] [more Google Benchmark flags]
#
# The binary defaults to build/bench/malloc_bench; later flags override the
# defaults below (e.g. --benchmark_min_time=0.5).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=$here/../build/bench/malloc_bench
if [[ $# -gt 0 && $1 != -* ]]; then
  bin=$1
  shift
fi
[[ -x $bin ]] || { echo "compare.sh: no benchmark binary at $bin (build it first)" >&2; exit 1; }

out=$here/out
mkdir -p "$out"
csv=$out/malloc_bench.csv
log=$out/malloc_bench.txt

# Repetitions of all benchmarks run in random order, so a noisy moment of the
# machine spreads over every allocator instead of falling on one.
"$bin" --benchmark_repetitions=9 --benchmark_report_aggregates_only=true \
  --benchmark_enable_random_interleaving=true --benchmark_min_time=0.1 --benchmark_out="$csv" --benchmark_out_format=csv "$@" >"$log" 2>&1 \
  || { cat "$log" >&2; exit 1; }

awk -F, '
  $1 ~ /_median"$/ {
    name = $1; gsub(/"/, "", name); sub(/_median$/, "", name)
    n = split(name, part, "/")          # kind / allocator / size
    if (n != 3) next
    if ($5 != "ns") { print "unexpected time unit " $5 > "/dev/stderr"; exit 1 }
    reps = $2
    have[part[1]] = 1
    per = (part[1] == "batch1000") ? 1000 : 1
    t[part[1] "/" part[2] "/" part[3]] = $4 / per   # CPU time: a preempted moment does not count
    if (!(part[3] in seen)) {                         # sizes in increasing order
      seen[part[3]] = 1
      for (i = ++nsizes; i > 1 && sizes[i - 1] + 0 > part[3] + 0; i--) sizes[i] = sizes[i - 1]
      sizes[i] = part[3]
    }
  }
  function cell(k) { return (k in t) ? sprintf("%9.2f", t[k]) : sprintf("%9s", "n/a") }
  function ratio(a, b) { return (a in t && b in t && t[b] > 0) ? sprintf("%9.2f", t[a] / t[b]) : sprintf("%9s", "n/a") }
  END {
    printf "malloc_bench: median of %s repetitions, CPU ns per malloc/free pair, one thread (lower is better)\n", reps
    while ((getline line < logfile) > 0)
      if (line ~ /^(Run on|Load Average|glibc:|jemalloc:)/) print "  " line
    split("pair batch1000", kinds, " ")
    for (k = 1; k <= 2; k++) {
      kind = kinds[k]
      if (!(kind in have)) continue
      print ""
      print (kind == "pair" ? "pair: malloc then free, repeated" \
                            : "batch1000: 1000 mallocs, then 1000 frees (time per pair)")
      printf "%6s %9s %9s %9s %9s %9s | %9s %9s %9s\n", "size", "spanmap", "sp_sized", "glibc", \
             "jemalloc", "je_sized", "glibc/sp", "je/sp", "jes/sps"
      for (i = 1; i <= nsizes; i++) {
        s = sizes[i]; p = kind "/"
        printf "%6s %s %s %s %s %s | %s %s %s\n", s, \
          cell(p "spanmap/" s), cell(p "spanmap_sized/" s), cell(p "glibc/" s), \
          cell(p "jemalloc/" s), cell(p "jemalloc_sized/" s), \
          ratio(p "glibc/" s, p "spanmap/" s), ratio(p "jemalloc/" s, p "spanmap/" s), \
          ratio(p "jemalloc_sized/" s, p "spanmap_sized/" s)
      }
    }
    print ""
    print "sp = spanmap_malloc/spanmap_free, sp_sized (sps) = spanmap::allocate/deallocate(p, size),"
    print "je = jemalloc malloc/free, je_sized (jes) = jemalloc mallocx/sdallocx."
  }' logfile="$log" "$csv"
echo "raw results: $csv (console output: $log)"
