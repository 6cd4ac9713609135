#!/usr/bin/env bash
# Thread scaling of every allocator, on this machine or on a bigger one.
#
#   bench/scaling.sh [options]           run build/bench/scaling_bench for glibc, spanmap
#                                        and the peers found here, R rounds
#   bench/scaling.sh --pack DIR          copy scaling_bench, the allocator libraries,
#                                        what they need, and this script into DIR
#   DIR/scaling.sh --libs DIR/lib --out OUT
#                                        on the other machine, from the copy
#
# Why a pack: the scaling question ("does spanmap keep up at 16 threads?") needs
# more cores than the machines that build spanmap have, and the machines with
# the cores may have no compiler and none of the peer allocators. scaling_bench
# is a plain malloc program and every allocator is a preload, so the binary and
# the .so files are the whole experiment. The pack holds:
#   DIR/scaling.sh        this script, which runs the pack
#   DIR/bin/scaling_bench
#   DIR/lib/              libspanmap_malloc.so, libjemalloc.so.2, libtcmalloc_minimal.so.4,
#                         libmimalloc.so.2 (those found here), and every library they and
#                         scaling_bench load as ldd lists them: the C++ runtime, libunwind,
#                         the C library and the dynamic loader itself
#   DIR/MANIFEST          where each file came from
# The runner starts scaling_bench through the pack's own dynamic loader
# (lib/ld-linux-*.so.* --library-path lib), so every allocator, glibc
# included, runs on this machine's C library and C++ runtime, whatever the
# other machine has: glibc's loader and libc must come from one build, and a
# pack that brought its libc but used the other machine's loader could fail to
# start. Only the kernel is the other machine's. Programs of the other machine
# (awk, env) never see the pack's libraries: nothing goes on LD_LIBRARY_PATH.
#
# A run, as in bench/run.sh: each allocator is a separate process per round,
# in a new random order each round, so a noisy moment of the machine lands on
# a different allocator each time; the table gives the median over rounds.
# OUT gets raw/scaling_<allocator>_r<k>.json (read by bench/report.py too:
# `bench/report.py OUT` makes the full report's scaling section and chart from
# them), logs/, machine.txt and scaling.md, a markdown table of the medians with
# spanmap's ratio to the best peer. Only bash, coreutils and awk are needed, so
# the table is made by awk rather than Python.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scaling.sh [options]
  --pack DIR         copy scaling_bench, the allocators, their libraries and this script
                     into DIR (needs a build; runs nothing)
  --libs DIR         take every allocator, and the loader and libraries they run with,
                     from DIR (a pack's lib/); without it: spanmap from the build, the
                     peers from ldconfig, the system's loader
  --build DIR        build folder with bench/scaling_bench and alloc/libspanmap_malloc.so
                     (default: $BUILD_DIR, else build/ of the repository)
  --bin FILE         the scaling_bench to run (default: the pack's bin/, else the build's)
  --out DIR          output folder (default scaling-out in the current folder)
  --threads LIST     thread counts (default 1,2,4,... up to nproc, and nproc)
  --rounds N         rounds (default 3)
  --time S           seconds per case and round (default 0.5)
  --allocators LIST  of glibc,spanmap,jemalloc,tcmalloc,mimalloc (default: all found)
  -h, --help         this text
EOF
}

die() { echo "scaling.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${BUILD_DIR:-}
pack="" libs="" bin="" out="" threads="" rounds=3 seconds=0.5 only=""
while (($#)); do
  opt=$1 val=""
  case $opt in
    --*=*) val=${opt#*=}; opt=${opt%%=*} ;;
  esac
  case $opt in
    --pack | --libs | --build | --bin | --out | --threads | --rounds | --time | --allocators)
      if [[ -z $val ]]; then
        (($# >= 2)) || die "$opt needs a value"
        val=$2
        shift
      fi ;;
  esac
  case $opt in
    --pack) pack=$val ;;
    --libs) libs=$val ;;
    --build) build=$val ;;
    --bin) bin=$val ;;
    --out) out=$val ;;
    --threads) threads=$val ;;
    --rounds) rounds=$val ;;
    --time) seconds=$val ;;
    --allocators) only=$val ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
  shift
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive number, not '$rounds'"
[[ -z $threads || $threads =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--threads must be a list like 1,2,4, not '$threads'"
[[ $seconds =~ ^[0-9]*\.?[0-9]+$ ]] || die "--time must be a number of seconds, not '$seconds'"

# name:soname of every allocator but glibc, which is what runs with nothing preloaded.
peers=(spanmap:libspanmap_malloc.so jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4
       mimalloc:libmimalloc.so.2)

default_build() {
  if [[ -z $build ]]; then
    [[ -f $here/../CMakeLists.txt ]] || die "no build folder: give --build DIR (or --libs DIR for a pack)"
    build=$here/../build
  fi
  [[ -d $build ]] || die "no build folder $build (cmake -S . -B build && cmake --build build --target scaling_bench spanmap_malloc)"
  build=$(cd "$build" && pwd)
}

# A library counts as found only if the dynamic linker really preloads it:
# ldconfig may list one of another word size, and a wrong path only warns.
true_bin=$(type -P true)
preloads() { [[ -f $1 ]] && [[ -z $(LD_PRELOAD=$1 "$true_bin" 2>&1) ]]; }
find_system_lib() {  # soname -> path on stdout
  local so=$1 p d multiarch
  while read -r p; do
    preloads "$p" && { echo "$p"; return 0; }
  done < <(ldconfig -p 2>/dev/null | awk -v so="$so" '$1 == so { print $NF }')
  multiarch=$(gcc -print-multiarch 2>/dev/null || true)
  for d in ${multiarch:+/usr/lib/$multiarch /lib/$multiarch} /usr/lib64 /usr/lib /usr/local/lib /lib64 /lib; do
    preloads "$d/$so" && { echo "$d/$so"; return 0; }
  done
  return 1
}

# --- --pack ------------------------------------------------------------------
if [[ -n $pack ]]; then
  default_build
  src_bin=${bin:-$build/bench/scaling_bench}
  [[ -x $src_bin ]] || die "no $src_bin (cmake --build $build --target scaling_bench)"
  mkdir -p "$pack/bin" "$pack/lib"
  pack=$(cd "$pack" && pwd)
  manifest=$pack/MANIFEST
  {
    echo "# scaling_bench pack, made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm), glibc $(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc //')"
    echo "# run: ./scaling.sh --libs lib --out OUT"
  } >"$manifest"
  cp -L "$src_bin" "$pack/bin/scaling_bench"
  echo "bin/scaling_bench $src_bin" >>"$manifest"
  cp "${BASH_SOURCE[0]}" "$pack/scaling.sh"
  chmod +x "$pack/scaling.sh"
  objects=("$src_bin")
  for p in "${peers[@]}"; do
    IFS=: read -r name so <<<"$p"
    if [[ $name == spanmap ]]; then
      path=$build/alloc/libspanmap_malloc.so
      [[ -f $path ]] || die "no $path (cmake --build $build --target spanmap_malloc)"
    elif ! path=$(find_system_lib "$so"); then
      echo "scaling.sh: $name not packed: $so not found here" >&2
      continue
    fi
    cp -L "$path" "$pack/lib/$so"
    echo "lib/$so $path" >>"$manifest"
    objects+=("$path")
  done
  # What the binary and the allocators load, as this machine resolves it,
  # the dynamic loader included (ldd's line without "=>").
  for o in "${objects[@]}"; do
    ldd "$o" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }
                    $1 ~ /^\// && $2 != "=>" { n = split($1, p, "/"); print p[n], $1 }'
  done | sort -u | while read -r so path; do
    [[ -e $pack/lib/$so ]] && continue
    cp -L "$path" "$pack/lib/$so"
    echo "lib/$so $path" >>"$manifest"
  done
  loaders=("$pack"/lib/ld-linux*.so.*)
  [[ -e ${loaders[0]} ]] || die "ldd named no dynamic loader (ld-linux*.so.*) for $src_bin; is it a dynamic glibc program?"
  chmod +x "${loaders[@]}"
  echo "scaling.sh: packed into $pack:"
  (cd "$pack" && ls -l scaling.sh bin lib | sed 's/^/  /')
  echo "run there: $pack/scaling.sh --libs $pack/lib --out OUT"
  exit 0
fi

# --- a run ---------------------------------------------------------------------
declare -A lib=()
launcher=()
if [[ -n $libs ]]; then
  [[ -d $libs ]] || die "no folder $libs"
  libs=$(cd "$libs" && pwd)
  for p in "${peers[@]}"; do
    IFS=: read -r name so <<<"$p"
    [[ -f $libs/$so ]] && lib[$name]=$libs/$so
  done
  loaders=("$libs"/ld-linux*.so.*)
  [[ -x ${loaders[0]} ]] || die "no dynamic loader (ld-linux*.so.*) in $libs: not a pack's lib/ folder?"
  launcher=("${loaders[0]}" --library-path "$libs")
else
  default_build
  [[ -f $build/alloc/libspanmap_malloc.so ]] && lib[spanmap]=$build/alloc/libspanmap_malloc.so
  for p in "${peers[@]:1}"; do
    IFS=: read -r name so <<<"$p"
    if path=$(find_system_lib "$so"); then lib[$name]=$path; fi
  done
fi
if [[ -z $bin ]]; then
  if [[ -x $here/bin/scaling_bench ]]; then
    bin=$here/bin/scaling_bench
  else
    default_build
    bin=$build/bench/scaling_bench
  fi
fi
[[ -x $bin ]] || die "no scaling_bench at $bin"

allocs=()
for a in glibc spanmap jemalloc tcmalloc mimalloc; do
  if [[ -n $only && ,$only, != *,$a,* ]]; then continue; fi
  if [[ $a == glibc || -n ${lib[$a]:-} ]]; then
    allocs+=("$a")
  else
    echo "scaling.sh: $a skipped: its library was not found" >&2
  fi
done
((${#allocs[@]})) || die "no allocator to run"

out=${out:-scaling-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/raw" "$out/logs"
rm -f "$out/scaling.md" "$out/machine.txt"
mkdir -p "$out/raw" "$out/logs"
unset LD_PRELOAD  # an inherited preload would sit under every allocator

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1), $(nproc) CPUs"
  echo "kernel: $(uname -srm); glibc $(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc //')"
  echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
  echo "scaling_bench: ${launcher[*]}${launcher[*]:+ }$bin"
  for a in "${allocs[@]}"; do echo "$a: ${lib[$a]:-the C library (nothing preloaded)}"; done
  echo "rounds: $rounds; seconds per case and round: $seconds; threads: ${threads:-1,2,4,... nproc}"
} >"$out/machine.txt"

failed=0
echo "scaling.sh: $rounds round(s) of ${allocs[*]}; results in $out"
for ((r = 1; r <= rounds; r++)); do
  if command -v shuf >/dev/null; then
    mapfile -t order < <(printf '%s\n' "${allocs[@]}" | shuf)
  else
    order=("${allocs[@]}")
  fi
  echo "round $r/$rounds: ${order[*]}" | tee -a "$out/machine.txt"
  for a in "${order[@]}"; do
    envs=(env -u LD_PRELOAD -u SPANMAP_CONF)
    [[ $a == glibc ]] || envs=(env -u SPANMAP_CONF LD_PRELOAD="${lib[$a]}")
    t0=$SECONDS
    printf '  %-10s' "$a"
    if "${envs[@]}" "${launcher[@]}" "$bin" ${threads:+--threads "$threads"} --time "$seconds" \
         --context "run_allocator=$a,run_round=$r" --out "$out/raw/scaling_${a}_r$r.json" \
         >"$out/logs/scaling_${a}_r$r.txt" 2>&1; then
      printf '%5d s\n' $((SECONDS - t0))
    else
      printf ' FAILED (logs/scaling_%s_r%d.txt)\n' "$a" "$r"
      rm -f "$out/raw/scaling_${a}_r$r.json"
      failed=$((failed + 1))
    fi
  done
done

# The table: median over rounds of each (workload, threads, allocator), and
# spanmap against the best of the others. A file whose malloc did not come
# from the library it was run with is left out, as bench/report.py does.
results=("$out"/raw/scaling_*.json)
[[ -e ${results[0]} ]] || die "no run finished; see $out/logs"
awk -v order="${allocs[*]}" '
  function field(line, key,   re) {
    re = "\"" key "\": \"?[^,\"}]*"
    if (!match(line, re)) return ""
    s = substr(line, RSTART + length(key) + 4, RLENGTH - length(key) - 4)
    sub(/^"/, "", s)
    return s
  }
  function median(list,   n, v, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function fmt(x) { return x >= 100 ? sprintf("%.0f", x) : x >= 10 ? sprintf("%.1f", x) : x >= 1 ? sprintf("%.2f", x) : sprintf("%.3f", x) }
  FNR == 1 {
    f = FILENAME; sub(/.*\/scaling_/, "", f); sub(/_r[0-9]+\.json$/, "", f); who = f; skip = 0
  }
  /"context"/ {
    lib = field($0, "malloc_library"); want = who == "glibc" ? "libc." : who
    if (index(lib, want) == 0) { skip = 1; notes = notes "\n- " FILENAME ": malloc came from " lib "; left out" }
  }
  /"items_per_second"/ && !skip {
    w = field($0, "workload"); t = field($0, "threads") + 0; v = field($0, "items_per_second") / 1e6
    k = w SUBSEP t
    if (!(k in seen)) { seen[k] = 1; cases[++ncases] = k }
    vals[k, who] = vals[k, who] " " v
  }
  END {
    na = split(order, al, " ")
    head = "| workload | threads |"; rule = "|---|---|"
    for (i = 1; i <= na; i++) { head = head " " al[i] " |"; rule = rule "---|" }
    print "Throughput, M ops/s (each allocation also freed), median over rounds; higher is better."
    print ""
    print head " best peer | spanmap / best peer |"
    print rule "---|---|"
    for (c = 1; c <= ncases; c++) {
      k = cases[c]; split(k, kk, SUBSEP)
      row = "| " kk[1] " | " kk[2] " |"; best = ""; bv = 0; sm = ""
      for (i = 1; i <= na; i++) {
        a = al[i]
        if ((k, a) in vals) {
          m = median(vals[k, a]); row = row " " fmt(m) " |"
          if (a == "spanmap") sm = m
          else if (m > bv) { bv = m; best = a }
        } else row = row " — |"
      }
      r = (sm != "" && bv > 0) ? sprintf("%.2f", sm / bv) : "—"
      print row " " (best == "" ? "—" : best) " | " r " |"
    }
    if (notes != "") print "\nNotes:" notes
  }' "${results[@]}" >"$out/scaling.md"

cat "$out/scaling.md"
echo "scaling.sh: table in $out/scaling.md; machine in $out/machine.txt"
if ((failed)); then
  echo "scaling.sh: $failed run(s) failed; the table is built from the rest" >&2
  exit 3
fi
