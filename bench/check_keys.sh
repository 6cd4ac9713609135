#!/bin/sh
# check_keys.sh: do map_peers_bench and the Go program (bench/go) run on the
# same keys? Both print their first N keys, N miss keys and the shuffle of N
# keys (--dump_keys / -dump_keys); this diffs the two listings. A comparison
# of the two programs' maps means something only while this passes.
#
#   bench/check_keys.sh [MAP_PEERS_BENCH [GO_PROGRAM|-] [N]]
#
# MAP_PEERS_BENCH is the built C++ binary (default: $BUILD_DIR/bench/
# map_peers_bench). GO_PROGRAM is the built Go binary (default: $GO_MAP_BENCH);
# without one, or with "-", the Go program is built from bench/go into a
# temporary directory, which needs the go tool. N defaults to 1000.
# Exit status: 0 same keys, 1 different keys, 2 could not run.
set -eu

if [ $# -gt 3 ]; then
    echo "usage: $0 [MAP_PEERS_BENCH [GO_PROGRAM|-] [N]]" >&2
    exit 2
fi
cpp=${1:-${BUILD_DIR:+$BUILD_DIR/bench/map_peers_bench}}
go_bin=${2:-${GO_MAP_BENCH:--}}
n=${3:-1000}
if [ -z "$cpp" ] || [ ! -x "$cpp" ]; then
    echo "check_keys: no map_peers_bench (give its path, or set BUILD_DIR)" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ "$go_bin" = "-" ]; then
    if ! command -v go >/dev/null 2>&1; then
        echo "check_keys: no go tool to build bench/go" >&2
        exit 2
    fi
    (cd "$here/go" && go build -o "$tmp/map_bench_go" .) || exit 2
    go_bin=$tmp/map_bench_go
fi

"$cpp" --dump_keys="$n" >"$tmp/cpp.txt" || { echo "check_keys: $cpp failed" >&2; exit 2; }
"$go_bin" -dump_keys="$n" >"$tmp/go.txt" || { echo "check_keys: $go_bin failed" >&2; exit 2; }
lines=$(wc -l <"$tmp/cpp.txt")
if [ "$lines" -ne $((3 * n)) ]; then
    echo "check_keys: expected $((3 * n)) lines from $cpp, got $lines" >&2
    exit 2
fi
if ! diff -u "$tmp/cpp.txt" "$tmp/go.txt" >"$tmp/diff.txt"; then
    echo "check_keys: the C++ and Go programs generate different keys; first differences:" >&2
    head -n 20 "$tmp/diff.txt" >&2
    exit 1
fi
echo "check_keys: same $n keys, misses and shuffle in both programs"
