#!/usr/bin/env bash
# End-to-end checks of the heap profile as google-pprof (Debian's
# google-perftools) reads it: the program runs, writes its profile, and
# `google-pprof --text` must name the allocating functions and unscale the
# samples to the right figures.
#
#   check_pprof.sh ratio   <profile_program>       <workdir>
#       in use: allocate_three_quarters : allocate_one_quarter within 15% of
#       3:1; allocate_and_free (all freed) holds nothing; no spanmap frame.
#   check_pprof.sh total   <profile_program>       <workdir>
#       1 GiB allocated at the default rate: pprof's unscaled --alloc_space
#       total within 10% of the bytes the program allocated.
#   check_pprof.sh conf    <profile_program>       <workdir>
#       ratio, with profiling started and dumped at exit by SPANMAP_CONF.
#   check_pprof.sh preload <plain_program> <workdir> <libspanmap_malloc.so>
#       ratio, in a C program on plain malloc under LD_PRELOAD + SPANMAP_CONF.
set -euo pipefail

case=$1 prog=$2 dir=$3 preload=${4:-}
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v google-pprof >/dev/null || fail "google-pprof not found (Debian package google-perftools)"
rm -rf "$dir"
mkdir -p "$dir"

# pprof --text --show_bytes: "<flat> <flat%> <sum%> <cum> <cum%> <function>".
pprof_text() {  # <program> <profile> <pprof options...>
    local p=$1 f=$2
    shift 2
    google-pprof --text --show_bytes "$@" "$p" "$f" 2>"$dir/pprof.stderr" >"$dir/pprof.txt" ||
        fail "google-pprof failed: $(cat "$dir/pprof.stderr")"
    echo "--- google-pprof --text $* $(basename "$p") $(basename "$f")"
    head -n 12 "$dir/pprof.txt"
}
flat_of() { awk -v f="$1" '$6 == f { print $1 }' "$dir/pprof.txt"; }

check_ratio() {  # <program> <profile>
    pprof_text "$1" "$2" --inuse_space
    local three one churn
    three=$(flat_of allocate_three_quarters)
    one=$(flat_of allocate_one_quarter)
    churn=$(flat_of allocate_and_free)
    [[ -n $three ]] || fail "allocate_three_quarters is not in the profile"
    [[ -n $one ]] || fail "allocate_one_quarter is not in the profile"
    # Charged themselves (flat), as the first frames of their stacks.
    [[ $three != 0 && $one != 0 ]] ||
        fail "the allocating functions are not the first frames (flat $three and $one bytes): spanmap's frames left in?"
    [[ -z $churn || $churn == 0 ]] || fail "allocate_and_free freed everything, yet holds $churn bytes in use"
    awk -v a="$three" -v b="$one" 'BEGIN {
        r = a / b; printf "in-use ratio %.3f (want 3 +- 15%%)\n", r
        exit !(b > 0 && r >= 3 * 0.85 && r <= 3 * 1.15) }' || fail "in-use ratio out of bounds"
    # The first frame is the program's: no spanmap function is charged.
    if awk '$1 != 0 && $6 ~ /spanmap/' "$dir/pprof.txt" | grep -q .; then
        fail "a spanmap frame is charged with allocations: $(awk '$1 != 0 && $6 ~ /spanmap/' "$dir/pprof.txt")"
    fi
    # The freed churn is there in the cumulative view.
    pprof_text "$1" "$2" --alloc_space >/dev/null
    churn=$(flat_of allocate_and_free)
    [[ -n $churn && $churn != 0 ]] || fail "allocate_and_free is missing from --alloc_space"
}

# One profile file, written at exit as <prefix>.<pid>.heap.
the_dump() {
    local files=("$dir"/conf.*.heap)
    [[ ${#files[@]} -eq 1 && -f ${files[0]} ]] || fail "expected one $dir/conf.<pid>.heap, found: ${files[*]}"
    echo "${files[0]}"
}

case $case in
ratio)
    "$prog" ratio "$dir/ratio.heap"
    check_ratio "$prog" "$dir/ratio.heap"
    ;;
total)
    truth=$("$prog" total "$dir/total.heap")
    pprof_text "$prog" "$dir/total.heap" --alloc_space
    estimate=$(awk '$1 == "Total:" { print $2 }' "$dir/pprof.txt")
    [[ -n $estimate ]] || fail "no Total line in pprof's output"
    awk -v t="$truth" -v e="$estimate" 'BEGIN {
        printf "allocated %d bytes, pprof estimates %d (%+.2f%%; want within 10%%)\n", t, e, 100 * (e - t) / t
        exit !(t >= 100 * 1048576 && e >= t * 0.9 && e <= t * 1.1) }' || fail "unscaled total out of bounds"
    for n in 64 1000 8192 40000; do
        [[ -n $(flat_of "churn_$n") ]] || fail "churn_$n is not in the profile"
    done
    ;;
conf)
    SPANMAP_CONF="prof:true,prof_rate:1k,prof_prefix:$dir/conf" "$prog" conf-ratio
    check_ratio "$prog" "$(the_dump)"
    ;;
preload)
    [[ -n $preload ]] || fail "no preload library given"
    LD_PRELOAD=$preload SPANMAP_CONF="prof:true,prof_rate:1k,prof_prefix:$dir/conf" "$prog"
    check_ratio "$prog" "$(the_dump)"
    ;;
*)
    fail "unknown case $case"
    ;;
esac
echo PASS
