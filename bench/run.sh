#!/usr/bin/env bash
# The one command behind the benchmark report: runs every allocator and every
# map through the same programs, R rounds over, and turns the results into
# bench/out/report.md with charts (bench/report.py).
#
#   bench/run.sh            full run: 5 rounds, the programs' own timings, maps up to 10M entries,
#                           thread scaling at 1, 2, 4 ... nproc threads
#   bench/run.sh --quick    smoke run of a minute or two: 2 rounds, tiny sizes, min_time 0.01,
#                           thread scaling at 1 and 2 threads in the first round only
#   bench/run.sh --help     all options
#
# How a run is laid out, and why:
#
# - alloc_bench calls plain malloc/free, so each allocator is a separate
#   process of the same binary: glibc with nothing preloaded; jemalloc,
#   tcmalloc, mimalloc and spanmap under LD_PRELOAD; and spanmap_sized, the
#   binary's own call into spanmap's sized API (--api=spanmap_sized). Peer
#   libraries are found through ldconfig (then the usual library folders, or
#   JEMALLOC_SO / TCMALLOC_SO / MIMALLOC_SO); a missing one is skipped, and the
#   report says so rather than the run failing.
# - A round runs every allocator process once, in a new random order, then
#   map_peers_bench and the Go program, whose order alternates from round to
#   round. A noisy moment of this shared machine then lands on a different
#   allocator each round, and the report's median over rounds drops it; one
#   long process per allocator would hand the whole noise to one of them.
# - scaling_bench (throughput against threads) is a plain malloc program too,
#   run once per round for glibc, spanmap and the peers under the same
#   preloads, in its own shuffled order after the alloc_bench processes.
#   spanmap_sized has no place there (scaling_bench links nothing of
#   spanmap's), and the feature variants are left to alloc_bench.
# - Each process runs each benchmark once (--benchmark_repetitions=1); the
#   repetition is the round. map_peers_bench also shuffles its own cases
#   (--benchmark_enable_random_interleaving).
# - The latency traces (one line per window of inserts) come from the last
#   round only: one trace is what the chart draws, and tracing every round
#   would only rewrite the files.
# - bench/out/ is rebuilt from scratch (raw/, latency/, logs/, machine.json,
#   report.md, the charts), so a report never mixes two runs. Other files
#   there, e.g. bench/compare.sh's, are left alone.
# - A process that fails does not stop the run: the report is still written
#   from what finished, lists the failure, and the exit status is 3.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/run.sh [options]
  --quick            smoke run: 2 rounds, min_time 0.01, maps of 1000 and 10000 entries,
                     65536 growth keys (checks the pipeline, not for conclusions)
  --rounds N         rounds (default 5; --quick: 2)
  --build DIR        build folder with bench/alloc_bench, bench/map_peers_bench,
                     bench/scaling_bench and alloc/libspanmap_malloc.so
                     (default: $BUILD_DIR, else build/)
  --out DIR          output folder (default bench/out)
  --min-time S       --benchmark_min_time / -min_time for every program (default 0.5,
                     Google Benchmark's own)
  --sizes LIST       map sizes (default 1000,10000,100000,1000000,10000000)
  --growth-keys N    keys of the growth-latency runs (default: the programs' 8M)
  --scaling-threads LIST
                     thread counts of scaling_bench (default 1,2,4,... up to nproc;
                     --quick: 1,2)
  --scaling-time S   seconds per scaling case and round (default 0.5; --quick: 0.05)
  --rt               the map programs at real-time priority (chrt -f 50; root or CAP_SYS_NICE),
                     so that the worst insert is the map's and not the scheduler's. Linux's RT
                     throttling (kernel.sched_rt_runtime_us, 950000 of every 1000000 us by
                     default) stops such a task for 50 ms each second, which would be the worst
                     insert: run.sh lifts it (-1) for the run when it may, puts it back on exit,
                     and the report says which way it ran
  --report-only      only rewrite the report from the results already in the output folder
  -h, --help         this text
environment: BUILD_DIR; JEMALLOC_SO, TCMALLOC_SO, MIMALLOC_SO (a peer library's path)
EOF
}

die() { echo "run.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

build=${BUILD_DIR:-}
out=""
rounds=""
quick=0
min_time=""
sizes=""
growth_keys=""
scaling_threads=""
scaling_time=""
report_only=0
rt=0
while (($#)); do
  opt=$1 val=""
  case $opt in
    --*=*) val=${opt#*=}; opt=${opt%%=*} ;;
  esac
  case $opt in
    --rounds | --build | --out | --min-time | --sizes | --growth-keys | --scaling-threads | --scaling-time)
      if [[ -z $val ]]; then
        (($# >= 2)) || die "$opt needs a value"
        val=$2
        shift
      fi ;;
  esac
  case $opt in
    --quick) quick=1 ;;
    --report-only) report_only=1 ;;
    --rt) rt=1 ;;
    --rounds) rounds=$val ;;
    --build) build=$val ;;
    --out) out=$val ;;
    --min-time) min_time=$val ;;
    --sizes) sizes=$val ;;
    --growth-keys) growth_keys=$val ;;
    --scaling-threads) scaling_threads=$val ;;
    --scaling-time) scaling_time=$val ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
  shift
done

if ((quick)); then
  : "${rounds:=2}" "${min_time:=0.01}" "${sizes:=1000,10000}" "${growth_keys:=65536}"
  : "${scaling_threads:=1,2}" "${scaling_time:=0.05}"
else
  : "${rounds:=5}" "${sizes:=1000,10000,100000,1000000,10000000}" "${scaling_time:=0.5}"
fi
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive number, not '$rounds'"
[[ -z $scaling_threads || $scaling_threads =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
  die "--scaling-threads must be a list like 1,2,4, not '$scaling_threads'"
[[ $scaling_time =~ ^[0-9]*\.?[0-9]+$ ]] || die "--scaling-time must be a number of seconds, not '$scaling_time'"

# A path given by the user is relative to where they stand; the defaults are
# relative to the repository.
if [[ -z $build ]]; then build=$root/build; fi
[[ -d $build ]] || die "no build folder $build (configure and build first: cmake -S . -B build && cmake --build build --target alloc_bench map_peers_bench scaling_bench spanmap_malloc)"
build=$(cd "$build" && pwd)
if [[ -z $out ]]; then out=$root/bench/out; fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Debian's python3 is the one with python3-matplotlib; a pyenv or venv
# python3 earlier on PATH usually is not.
py=/usr/bin/python3
[[ -x $py ]] || py=$(command -v python3 || true)
[[ -n $py ]] || die "no python3 for the report"

if ((report_only)); then
  exec "$py" "$here/report.py" "$out"
fi

# --- what can run --------------------------------------------------------------
alloc_bin=$build/bench/alloc_bench
maps_bin=$build/bench/map_peers_bench
scaling_bin=$build/bench/scaling_bench
preload=$build/alloc/libspanmap_malloc.so
missing=()
[[ -x $alloc_bin ]] || missing+=(alloc_bench)
[[ -x $maps_bin ]] || missing+=(map_peers_bench)
[[ -x $scaling_bin ]] || missing+=(scaling_bench)
[[ -f $preload ]] || missing+=(spanmap_malloc)
if ((${#missing[@]})); then
  die "not built in $build: ${missing[*]}
  build with: cmake --build $build --target ${missing[*]}
  (a sanitizer build has no spanmap_malloc: use a plain build for benchmarks)"
fi
cache=$build/CMakeCache.txt
cache_get() { [[ -f $cache ]] && sed -n "s/^$1:[A-Z]*=//p" "$cache" | head -n1 || true; }
build_type=$(cache_get CMAKE_BUILD_TYPE)
[[ -z $(cache_get SPANMAP_SANITIZE) ]] || die "$build is a sanitizer build; its timings mean nothing"
case $build_type in
  Release | RelWithDebInfo | MinSizeRel) ;;
  *) echo "run.sh: warning: $build is a '${build_type:-unset}' build; timings will be off" >&2 ;;
esac

declare -A skipped=() lib=()
failed=()

# A library counts as found only if the dynamic linker really preloads it:
# ldconfig may list one of another word size, and a wrong path only warns.
true_bin=$(type -P true)
preloads() { [[ -f $1 ]] && [[ -z $(LD_PRELOAD=$1 "$true_bin" 2>&1) ]]; }
find_lib() {  # soname [override path] -> path on stdout
  local so=$1 override=$2 p d multiarch
  if [[ -n $override ]]; then
    preloads "$override" && { echo "$override"; return 0; }
    echo "run.sh: warning: $override cannot be preloaded; looking for $so instead" >&2
  fi
  while read -r p; do
    preloads "$p" && { echo "$p"; return 0; }
  done < <(ldconfig -p 2>/dev/null | awk -v so="$so" '$1 == so { print $NF }')
  multiarch=$(gcc -print-multiarch 2>/dev/null || true)
  for d in ${multiarch:+/usr/lib/$multiarch /lib/$multiarch} /usr/lib64 /usr/lib /usr/local/lib /lib64 /lib; do
    preloads "$d/$so" && { echo "$d/$so"; return 0; }
  done
  return 1
}

# spanmap_prof and spanmap_noscav are spanmap's malloc with the heap profiler
# on, and with the background scavenger off: the report reads them as the
# cost of those features, in the same rounds as the rest.
allocs=(glibc spanmap spanmap_sized spanmap_prof spanmap_noscav)
lib[spanmap]=$preload
for peer in jemalloc:libjemalloc.so.2:${JEMALLOC_SO:-} tcmalloc:libtcmalloc_minimal.so.4:${TCMALLOC_SO:-} \
            mimalloc:libmimalloc.so.2:${MIMALLOC_SO:-}; do
  IFS=: read -r name so override <<<"$peer"
  if p=$(find_lib "$so" "$override"); then
    lib[$name]=$p
    allocs+=("$name")
  else
    skipped[$name]="$so not found (install its Debian package, or set ${name^^}_SO)"
    echo "run.sh: $name skipped: $so not found" >&2
  fi
done

# scaling_bench runs for the real allocators only (see the opening comment).
scaling_allocs=()
for a in glibc spanmap jemalloc tcmalloc mimalloc; do
  [[ -n ${lib[$a]:-} || $a == glibc ]] && scaling_allocs+=("$a")
done
# --quick runs the scaling cases in its first round only: a smoke test of
# the program and the report, not a measurement.
scaling_rounds=$rounds
((quick)) && scaling_rounds=1

raw=$out/raw logs=$out/logs latency=$out/latency
rm -rf "$raw" "$logs" "$latency"
rm -f "$out/report.md" "$out/machine.json"
mkdir -p "$raw" "$logs" "$latency"

go_bin=""
if [[ ! -d $root/bench/go ]]; then
  skipped[go_map]="bench/go/ is not in this tree"
elif ! command -v go >/dev/null; then
  skipped[go_map]="no go toolchain on PATH (Debian: apt-get install golang-go)"
elif (cd "$root/bench/go" &&
       # go keeps its build cache under $HOME; a bare CI environment may have none.
       if [[ -z ${HOME:-} && -z ${GOCACHE:-} ]]; then export GOCACHE=$out/go-cache GOPATH=$out/go-path; fi &&
       go build -o "$out/go_map_bench" .) >"$logs/go_build.txt" 2>&1; then
  go_bin=$out/go_map_bench
else
  skipped[go_map]="go build failed (logs/go_build.txt)"
fi
[[ -z ${skipped[go_map]:-} ]] || echo "run.sh: Go's map skipped: ${skipped[go_map]}" >&2

# Both programs must time the same keys, or the comparison is of two workloads.
keys_check=""
if [[ -n $go_bin && -x $here/check_keys.sh ]]; then
  rc=0
  BUILD_DIR=$build GO_MAP_BENCH=$go_bin "$here/check_keys.sh" >"$logs/check_keys.txt" 2>&1 || rc=$?
  case $rc in
    0) keys_check="same keys" ;;
    1) keys_check="FAILED: the programs generate different keys (logs/check_keys.txt); Go's figures are not comparable" ;;
    *) keys_check="could not run (exit $rc; logs/check_keys.txt)" ;;
  esac
  ((rc == 0)) || echo "run.sh: warning: bench/check_keys.sh: $keys_check" >&2
fi

# --- the rounds ----------------------------------------------------------------
# Without --min-time each C++ program keeps Google Benchmark's 0.5 s, and the
# Go program, whose own default is shorter, is given the same.
mt_gbench=() mt_go=(-min_time=0.5)
if [[ -n $min_time ]]; then mt_gbench=(--benchmark_min_time="$min_time"); mt_go=(-min_time="$min_time"); fi
gk_cpp=() gk_go=()
if [[ -n $growth_keys ]]; then gk_cpp=(--growth_keys="$growth_keys"); gk_go=(-growth_keys="$growth_keys"); fi

run_one() {  # label log command...
  local label=$1 log=$2 t0=$SECONDS rc=0
  shift 2
  printf '  %-16s' "$label"
  "$@" >"$log" 2>&1 || rc=$?
  if ((rc == 0)); then
    printf '%5d s\n' $((SECONDS - t0))
  else
    printf ' FAILED (exit %d after %d s; %s)\n' "$rc" $((SECONDS - t0)) "$log"
    failed+=("$label, round $r: exit $rc (${log#"$out"/})")
  fi
}

run_alloc() {
  local a=$1 envs=(env -u LD_PRELOAD -u SPANMAP_CONF) args=()
  case $a in
    glibc) ;;
    spanmap_sized) args=(--api=spanmap_sized) ;;
    # The profile it writes at exit goes to logs/ (it shows the benchmark's own stacks).
    spanmap_prof) envs=(env LD_PRELOAD="$preload" SPANMAP_CONF="prof:true,prof_prefix:$logs/alloc_prof_r$r") ;;
    spanmap_noscav) envs=(env LD_PRELOAD="$preload" SPANMAP_CONF=scavenger:false) ;;
    *) envs=(env -u SPANMAP_CONF LD_PRELOAD="${lib[$a]}") ;;
  esac
  run_one "$a" "$logs/alloc_${a}_r$r.txt" "${envs[@]}" "$alloc_bin" "${args[@]}" \
    --benchmark_repetitions=1 "${mt_gbench[@]}" \
    --benchmark_context="run_allocator=$a,run_round=$r" \
    --benchmark_out="$raw/alloc_${a}_r$r.json" --benchmark_out_format=json
}

run_scaling() {
  local a=$1 envs=(env -u LD_PRELOAD -u SPANMAP_CONF)
  [[ $a == glibc ]] || envs=(env -u SPANMAP_CONF LD_PRELOAD="${lib[$a]}")
  run_one "scaling $a" "$logs/scaling_${a}_r$r.txt" "${envs[@]}" "$scaling_bin" \
    ${scaling_threads:+--threads "$scaling_threads"} --time "$scaling_time" \
    --context "run_allocator=$a,run_round=$r" --out "$raw/scaling_${a}_r$r.json"
}

run_maps() {
  local trace=()
  ((r < rounds)) || trace=(--latency_trace="$latency")
  run_one map_peers_bench "$logs/map_peers_r$r.txt" "${rt_cmd[@]}" env -u LD_PRELOAD "$maps_bin" \
    --benchmark_repetitions=1 --benchmark_enable_random_interleaving=true "${mt_gbench[@]}" \
    --sizes="$sizes" "${gk_cpp[@]}" "${trace[@]}" --benchmark_context="run_round=$r" \
    --benchmark_out="$raw/map_peers_r$r.json" --benchmark_out_format=json
}

run_go() {
  [[ -n $go_bin ]] || return 0
  local trace=()
  ((r < rounds)) || trace=(-latency_trace="$latency")
  run_one go_map_bench "$logs/go_map_r$r.txt" "${rt_cmd[@]}" env -u LD_PRELOAD "$go_bin" \
    -sizes="$sizes" "${mt_go[@]}" "${gk_go[@]}" "${trace[@]}" -noise_floor -out="$raw/go_map_r$r.json"
}

unset LD_PRELOAD  # an inherited preload would sit under every allocator

# --rt: real-time priority for the map programs, RT throttling lifted while
# they run (and put back however run.sh ends).
rt_cmd=()
rt_mode=""
if ((rt)); then
  chrt -f 50 true 2>/dev/null || die "--rt: chrt -f 50 is refused here (run as root, or grant CAP_SYS_NICE)"
  rt_cmd=(chrt -f 50)
  rt_knob=/proc/sys/kernel/sched_rt_runtime_us
  rt_saved=$(cat "$rt_knob" 2>/dev/null || echo "")
  if [[ -n $rt_saved && $rt_saved != -1 ]] && { echo -1 >"$rt_knob"; } 2>/dev/null; then
    trap 'echo "$rt_saved" >"$rt_knob"' EXIT
    rt_mode="chrt -f 50, RT throttling lifted for the run"
  elif [[ $rt_saved == -1 ]]; then
    rt_mode="chrt -f 50, RT throttling off"
  else
    rt_mode="chrt -f 50, RT throttling on (${rt_saved:-?} us of each second): a worst insert near 50 ms is the throttle"
    echo "run.sh: --rt: cannot lift RT throttling ($rt_knob); the worst inserts will include its pauses" >&2
  fi
fi
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
t_start=$SECONDS
orders=()
echo "run.sh: $rounds round(s) of: ${allocs[*]}, scaling_bench (${scaling_allocs[*]}), map_peers_bench${go_bin:+, go_map_bench}; results in $out"
for ((r = 1; r <= rounds; r++)); do
  mapfile -t order < <(printf '%s\n' "${allocs[@]}" | shuf)
  scaling_order=()
  ((r > scaling_rounds)) || mapfile -t scaling_order < <(printf '%s\n' "${scaling_allocs[@]}" | shuf)
  maps_order="map_peers_bench${go_bin:+ go_map_bench}"
  ((r % 2)) || maps_order="${go_bin:+go_map_bench }map_peers_bench"
  orders+=("round $r: ${order[*]}${scaling_order[*]:+, scaling: ${scaling_order[*]},} $maps_order")
  echo "round $r/$rounds"
  for a in "${order[@]}"; do run_alloc "$a"; done
  for a in "${scaling_order[@]}"; do run_scaling "$a"; done
  for m in $maps_order; do
    if [[ $m == map_peers_bench ]]; then run_maps; else run_go; fi
  done
  if ((r == 1 && rounds > 1)); then
    echo "  (a round took $((SECONDS - t_start)) s: about $(((SECONDS - t_start) * (rounds - 1) / 60 + 1)) min to go)"
  fi
done
duration=$((SECONDS - t_start))

# --- the machine ---------------------------------------------------------------
pkg_of() {  # library path -> "package<TAB>version", from dpkg's own records
  local f pkg
  command -v dpkg-query >/dev/null || return 0
  for f in "$1" "$(readlink -f "$1")"; do
    pkg=$(dpkg-query -S "$f" 2>/dev/null | head -n1 | cut -d: -f1) && [[ -n $pkg ]] && break
  done
  [[ -n ${pkg:-} ]] || return 0
  printf '%s\t%s' "$pkg" "$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null)"
}
libraries=""
for name in jemalloc tcmalloc mimalloc; do
  [[ -n ${lib[$name]:-} ]] || continue
  libraries+="$name"$'\t'"${lib[$name]}"$'\t'"$(pkg_of "${lib[$name]}")"$'\n'
done
skipped_lines=""
for k in "${!skipped[@]}"; do skipped_lines+="$k"$'\t'"${skipped[$k]}"$'\n'; done
cxx=$(cache_get CMAKE_CXX_COMPILER)
commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -n1)

M_date=$started M_duration_s=$duration M_git_commit=$commit M_git_dirty=${dirty:+1} \
M_build_dir=${build#"$root"/} M_build_type=$build_type M_quick=$quick M_rounds=$rounds \
M_min_time=$min_time M_sizes=$sizes M_growth_keys=$growth_keys M_load_at_start=$load_at_start \
M_scaling_threads=${scaling_threads:-"1,2,4,... nproc"} M_scaling_time=$scaling_time M_scaling_rounds=$scaling_rounds \
M_nproc=$(nproc) M_realtime="$rt_mode" \
M_cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)" \
M_kernel="$(uname -srm)" \
M_glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc //')" \
M_compiler="$( ("${cxx:-c++}" --version 2>/dev/null || true) | head -n1)" \
M_go_version="$( ( [[ -n $go_bin ]] && go version) 2>/dev/null || true)" \
M_benchmark_library="$(dpkg-query -W -f='libbenchmark-dev ${Version}' libbenchmark-dev 2>/dev/null || true)" \
M_keys_check=$keys_check \
M_libraries=$libraries M_skipped=$skipped_lines \
M_failed_runs="$(printf '%s\n' "${failed[@]+"${failed[@]}"}")" \
M_round_orders="$(printf '%s\n' "${orders[@]}")" \
"$py" - "$out/machine.json" <<'PY'
import json, os, sys
e = {k[2:]: v for k, v in os.environ.items() if k.startswith("M_")}
m = {k: v for k, v in e.items() if v and k not in ("libraries", "skipped", "failed_runs", "round_orders")}
for k in ("duration_s", "rounds", "nproc", "growth_keys", "scaling_rounds"):
    if k in m and m[k].isdigit():
        m[k] = int(m[k])
m["quick"] = e.get("quick") == "1"
m["git_dirty"] = bool(e.get("git_dirty"))
m["libraries"] = {}
for line in e.get("libraries", "").splitlines():
    name, path, pkg, ver = (line.split("\t") + ["", "", ""])[:4]
    m["libraries"][name] = {"path": path, "package": pkg, "version": ver}
m["skipped"] = dict((l.split("\t", 1) + [""])[:2] for l in e.get("skipped", "").splitlines() if l)
m["failed_runs"] = [l for l in e.get("failed_runs", "").splitlines() if l]
m["round_orders"] = [l for l in e.get("round_orders", "").splitlines() if l]
with open(sys.argv[1], "w") as f:
    json.dump(m, f, indent=1, sort_keys=True)
    f.write("\n")
PY

"$py" "$here/report.py" "$out"
echo "run.sh: $rounds round(s) in $((duration / 60)) min $((duration % 60)) s; report: $out/report.md"
if ((${#failed[@]})); then
  echo "run.sh: ${#failed[@]} run(s) failed; the report is built from the rest:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 3
fi
