#!/usr/bin/env bash
# Runs one unmodified program twice, with and without spanmap's malloc
# preloaded, and compares what they produced.
#   real_programs.sh <case> <libspanmap_malloc.so> <build dir for test programs>
set -euo pipefail
case_name=$1
preload=$2
bindir=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

on_spanmap() { LD_PRELOAD="$preload" "$@"; }

# The preload takes: a preloaded process has the library mapped. (Read into a
# variable: grep -q closing a pipe early would fail the script under pipefail.)
maps=$(on_spanmap cat /proc/self/maps)
[[ $maps == *libspanmap_malloc* ]] || { echo "the preload did not take" >&2; exit 1; }

case "$case_name" in
python)
  cat >alloc_heavy.py <<'PY'
import hashlib, json, random
random.seed(12345)
h = hashlib.sha256()
for rnd in range(6):
    d = {f"key-{i}-{random.random()}": [random.randint(0, 10**9) for _ in range(i % 13)] for i in range(60000)}
    s = json.dumps(d, sort_keys=True)
    h.update(s.encode())
    objs = [list(range(i % 50)) for i in range(100000)]
    text = " ".join(str(len(o)) for o in objs)
    h.update(text.encode())
    del d, objs
print(h.hexdigest())
PY
  python3 alloc_heavy.py >plain.txt
  on_spanmap python3 alloc_heavy.py >spanmap.txt
  ;;
gcc)
  # A translation unit heavy on templates: the pmr tests with GoogleTest.
  root=$(cd "$(dirname "$0")/../.." && pwd)
  compile() { "$@" g++ -std=c++20 -O2 -frandom-seed=spanmap -I"$root/alloc/include" -c "$root/tests/pmr/pmr_test.cpp" -o "$out"; }
  out=plain.o compile env
  out=spanmap.o compile env LD_PRELOAD="$preload"
  mv plain.o plain.txt
  mv spanmap.o spanmap.txt
  ;;
sort)
  # 50 MB of pseudo-random lines from a fixed seed.
  awk 'BEGIN { srand(42); for (i = 0; i < 3200000; i++) printf "%d %x\n", int(rand() * 1e9), int(rand() * 2^31) }' >input.txt
  sort -S 64M --parallel=2 input.txt >plain.txt
  on_spanmap sort -S 64M --parallel=2 input.txt >spanmap.txt
  ;;
xz)
  awk 'BEGIN { srand(7); for (i = 0; i < 400000; i++) printf "line %d of %d: %x\n", i, int(rand() * 1000), int(rand() * 2^31) }' >input.txt
  xz -T2 -6 -c input.txt >plain.xz
  on_spanmap xz -T2 -6 -c input.txt >spanmap.xz
  cmp plain.xz spanmap.xz
  on_spanmap xz -T2 -d -c spanmap.xz >roundtrip.txt
  cmp input.txt roundtrip.txt
  sha256sum <roundtrip.txt >plain.txt
  sha256sum <input.txt >spanmap.txt
  ;;
git)
  export GIT_AUTHOR_NAME=spanmap GIT_AUTHOR_EMAIL=spanmap@example.invalid GIT_COMMITTER_NAME=spanmap
  export GIT_COMMITTER_EMAIL=spanmap@example.invalid GIT_AUTHOR_DATE='2026-01-01T00:00:00Z'
  export GIT_COMMITTER_DATE='2026-01-01T00:00:00Z' GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
  run_git() {  # <dir> <prefix command...>
    local dir=$1; shift
    mkdir "$dir"
    (cd "$dir" && "$@" git init -q -b main . &&
      for i in $(seq 1 200); do printf 'file %d\n%s\n' "$i" "$(seq 1 "$i")" >"f$i.txt"; done &&
      "$@" git add . && "$@" git commit -q -m "first" &&
      for i in $(seq 1 50); do echo "change $i" >>"f$i.txt"; done &&
      "$@" git commit -q -am "second" && "$@" git log --format='%H %s' && "$@" git fsck --strict --no-progress 2>&1)
  }
  run_git plain env >plain.txt
  run_git spanmap env LD_PRELOAD="$preload" >spanmap.txt
  ;;
fork)
  on_spanmap "$bindir/malloc_fork_threads" >spanmap.txt
  cp spanmap.txt plain.txt
  ;;
threads)
  on_spanmap "$bindir/malloc_thread_churn" >spanmap.txt
  cp spanmap.txt plain.txt
  ;;
*)
  echo "unknown case $case_name" >&2
  exit 2
  ;;
esac

if ! cmp -s plain.txt spanmap.txt; then
  echo "$case_name: output differs under spanmap" >&2
  diff plain.txt spanmap.txt | head -20 >&2
  exit 1
fi
echo "$case_name: same output with and without spanmap ($(wc -c <spanmap.txt) bytes)"
