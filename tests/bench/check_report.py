#!/usr/bin/env python3
"""Keeps the benchmark pipeline from rotting: runs bench/report.py on the
hand-made results in fixtures/ and checks the report's tables, cell by cell,
against figures worked out by hand — not against a second copy of the code,
which would repeat its mistakes.

    check_report.py REPORT_PY FIXTURES_DIR [RUN_SH]

The fixtures are a small run in bench/out's shape: three rounds for most
allocators, two good ones for mimalloc (an even count: the median is the mean
of the middle two) and a third whose preload did not take (malloc came from
libc, so it must be left out), tcmalloc missing altogether, glibc's third
round cut off half-way as a crashed process leaves it, Google Benchmark aggregates and an errored
entry that must not count as samples, a Go result file without run_type
fields, and latency traces with and without a header line. The figures:

    spanmap   pair/16: 10, 30, 20 ns -> 20.0, spread (30-10)/20 = 100%
    jemalloc  pair/16: 40, 47, 42    -> 42.0 (a mean would read 43.0); ratio 42/20 = 2.10
    mimalloc  pair/16: 10, 20, [1000 from libc] -> 15.0; ratio 15/20 = 0.75 (bold: spanmap slower)
    glibc     pair/16: 30, 50, [cut] -> 40.0; ratio 2.00
    jemalloc  pair/64: 3 vs spanmap 5, 6, 7 -> 6.00; ratio 0.50, so target (a) is not met
    spanmap   rss pair/16: 10, 12, 11 MiB -> 11.0
    map insert u64 1k: spanmap 50, 90, 60 -> 60.0, spread 67%; std_unordered 150, 130, 140 -> 140 (2.33);
                       go 66 (1.10); absl 30 (0.50); bytes/entry 40 vs Go 48
    bytes/entry str 1k: spanmap 72 with 32 of key text -> 40.0 vs Go 80
    growth max: spanmap 20, 25, 45 us -> 25.0, spread 100%; absl 2000 us: 80x, target (c) met
    spanmap_prof   pair/16: 22, 33, 24 -> 24, cost 24/20 = 1.20; pair/64: 6 -> 1.00;
                   geometric mean sqrt(1.2) = 1.095 > 1.05: target (e) not met
    spanmap_noscav pair/16: 25, 20, 20 -> 20, cost spanmap/noscav = 1.00; pair/64: 6, 6.6, 6 -> 1.00;
                   target (f) met. Neither is an allocator column.
    scaling (M ops/s; mimalloc's third round again from libc, left out; tcmalloc missing):
              spanmap        jemalloc       mimalloc     glibc   best peer   spanmap / best
    churn/1   50, 40, 60     70, 72, 71     80, 90       30      mimalloc 85 50/85 = 0.59, spread 20/50 = 40%
    churn/2   100, 110, 90   120            100, 110     50      jemalloc    100/120 = 0.83
    prodcons/2 40, 44, 42    20             30, 34       10      mimalloc 32 42/32 = 1.31
    larson/2  90, 95, 100    80             100, 104     30      mimalloc 102 95/102 = 0.93
    large/1   2.0            —              —            0.5     glibc       4.00
    target (g) (churn/2 and prodcons/2 at least the best peer's) is not met.

A second pass gives report.py only spanmap's allocator files and no
machine.json: every target must then read "not measured", and nothing may
crash. Charts are checked only when matplotlib can be imported.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def run_report(report_py, out_dir):
    p = subprocess.run([sys.executable, report_py, out_dir], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout, p.stderr, sep="\n")
        sys.exit(f"FAIL: report.py exited with {p.returncode}")
    with open(os.path.join(out_dir, "report.md")) as f:
        return f.read()


def tables(md):
    """{heading: [ {column: cell} ]} for every markdown table, cells without **."""
    out, heading, header = {}, None, None
    for line in md.splitlines():
        if line.startswith("#"):
            heading, header = line.lstrip("#").strip(), None
        elif line.startswith("|"):
            cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(set(c) <= {"-", ":"} for c in cells):
                out.setdefault(heading, []).append(dict(zip(header, cells)))
        else:
            header = None
    return out


def cell(t, heading, key, column):
    """The cell in `column` of the row whose first cells join (by " ") to `key`."""
    for row in t.get(heading, []):
        vals = list(row.values())
        for k in range(1, len(vals) + 1):
            if " ".join(vals[:k]) == key:
                return row.get(column)
    return None


def number(c):
    """The figure in a cell, without its spread: "20.0 (100%)" -> "20.0"."""
    return None if c is None else c.split(" (")[0]


def expect(t, heading, key, column, want, spread=None):
    got = cell(t, heading, key, column)
    check(number(got) == want, f"[{heading}] {key} / {column}: want {want}, got {got!r}")
    if spread is not None:
        check(got is not None and got.endswith(f"({spread})"),
              f"[{heading}] {key} / {column}: want spread {spread}, got {got!r}")


def target_status(t, letter):
    for row in t.get("Targets", []):
        if row.get("target", "").startswith(f"({letter})"):
            return row.get("status")
    return None


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit("usage: check_report.py REPORT_PY FIXTURES_DIR [RUN_SH]")
    report_py, fixtures = argv[1], argv[2]
    try:
        import matplotlib  # noqa: F401
        have_mpl = True
    except ImportError:
        have_mpl = False
        print("matplotlib not importable: checking the tables only")

    with tempfile.TemporaryDirectory(prefix="spanmap_report_") as tmp:
        full = os.path.join(tmp, "full")
        shutil.copytree(fixtures, full)
        md = run_report(report_py, full)
        t = tables(md)

        time, rat, rss = "Time per operation (ns)", "Time as a ratio to spanmap (peer / spanmap; above 1: spanmap faster)", "Peak RSS (MiB)"
        expect(t, time, "pair/16", "spanmap", "20.0", spread="100%")
        expect(t, time, "pair/16", "jemalloc", "42.0")
        expect(t, time, "pair/16", "mimalloc", "15.0")
        expect(t, time, "pair/16", "glibc", "40.0")
        expect(t, time, "pair/64", "spanmap", "6.00")
        expect(t, time, "two_threads/64", "jemalloc", "45.0")
        expect(t, rat, "pair/16", "jemalloc", "2.10")
        expect(t, rat, "pair/16", "mimalloc", "0.75")
        expect(t, rat, "pair/16", "glibc", "2.00")
        expect(t, rat, "pair/64", "jemalloc", "0.50")
        expect(t, rss, "pair/16", "spanmap", "11.0")
        check("**0.75**" in md, "a ratio below 1 is not in bold")
        check(all("tcmalloc" not in row for row in t.get(time, [])), "tcmalloc has a column although it was never run")
        check(re.search(r"Allocators\n\nNot measured: tcmalloc\.", md), "tcmalloc not reported as not measured")
        check("alloc_glibc_r3.json: unreadable" in md, "the cut-off file is not reported")
        check("alloc_mimalloc_r3.json: run as mimalloc, but malloc came from libc.so.6; left out" in md,
              "the run whose preload did not take is not reported")

        mt, mr = "Time per operation, u64 keys (ns)", "Time as a ratio to spanmap, u64 keys (peer / spanmap; above 1: spanmap faster)"
        expect(t, mt, "insert 1k", "spanmap", "60.0", spread="67%")
        expect(t, mt, "insert 1k", "std_unordered", "140")
        expect(t, mt, "lookup_hit 1k", "spanmap", "11.0")
        expect(t, mr, "insert 1k", "std_unordered", "2.33")
        expect(t, mr, "insert 1k", "go_map", "1.10")
        expect(t, mr, "insert 1k", "absl_flat", "0.50")
        expect(t, mr, "lookup_hit 1k", "std_unordered", "2.27")
        expect(t, "Time as a ratio to spanmap, str keys (peer / spanmap; above 1: spanmap faster)",
               "insert 1k", "go_map", "1.13")
        bpe = "Bytes per entry (all heaps, after the inserts; lower is better)"
        expect(t, bpe, "insert u64 1k", "spanmap", "40.0")
        expect(t, bpe, "insert u64 1k", "go_map", "48.0")
        expect(t, bpe, "insert str 1k", "spanmap", "72.0")
        nokey = "Bytes per entry without the key text (string keys)"
        expect(t, nokey, "insert 1k", "spanmap", "40.0")
        expect(t, nokey, "insert 1k", "std_unordered", "64.0")
        expect(t, nokey, "insert 1k", "go_map", "80.0")
        gl = "Growth latency: each insert timed, growing from an empty map"
        expect(t, gl, "spanmap", "max (µs)", "25.0", spread="100%")
        expect(t, gl, "absl_flat", "max (µs)", "2000")
        expect(t, gl, "absl_flat", "max / spanmap's max", "80.0")
        expect(t, gl, "go_map", "p50 (ns)", "45.0")
        check("spanmap_jemalloc" in md.split("## Maps")[1].split("\n\n")[1], "missing map peer not reported")

        feat = "What spanmap's own features cost"
        expect(t, feat, "pair/16", "heap profiler on at 512 KiB", "1.20")
        expect(t, feat, "pair/64", "heap profiler on at 512 KiB", "1.00")
        expect(t, feat, "pair/16", "background scavenger", "1.00")
        check("geometric mean over 2 cases ×1.095" in md, "target (e) lacks the variant's geometric mean")
        check(all("spanmap_prof" not in row and "spanmap_noscav" not in row for row in t.get(time, [])),
              "a feature variant is shown as an allocator column")

        for letter, want in (("a", "not met"), ("b", "met"), ("c", "met"), ("d", "met"), ("e", "not met"),
                             ("f", "met"), ("g", "not met")):
            check(target_status(t, letter) == want, f"target ({letter}): want {want}, got {target_status(t, letter)!r}")
        check("×80.0" in md and "u64 n=1k: 40.0 vs 48.0" in md and "str n=1k: 40.0 vs 80.0" in md,
              "target evidence lacks the measured figures")

        st, sr = "Throughput against threads (M ops/s)", "Throughput as a ratio to the best peer (above 1: faster than every peer)"
        expect(t, st, "churn 1", "spanmap", "50.0", spread="40%")
        expect(t, st, "churn 1", "mimalloc", "85.0")
        expect(t, st, "churn 2", "spanmap", "100")
        expect(t, st, "prodcons 2", "mimalloc", "32.0")
        expect(t, st, "larson 2", "mimalloc", "102")
        expect(t, st, "large 1", "jemalloc", "—")
        expect(t, sr, "churn 1", "best peer", "mimalloc")
        expect(t, sr, "churn 1", "spanmap", "0.59")
        expect(t, sr, "churn 1", "jemalloc", "0.84")
        expect(t, sr, "churn 2", "best peer", "jemalloc")
        expect(t, sr, "churn 2", "spanmap", "0.83")
        expect(t, sr, "prodcons 2", "spanmap", "1.31")
        expect(t, sr, "larson 2", "spanmap", "0.93")
        expect(t, sr, "large 1", "best peer", "glibc")
        expect(t, sr, "large 1", "spanmap", "4.00")
        check(cell(t, st, "prodcons 1", "spanmap") is None, "prodcons at one thread has a row")
        check(re.search(r"Thread scaling\n\nNot measured: tcmalloc\.", md), "scaling: tcmalloc not reported as not measured")
        check("scaling_mimalloc_r3.json: run as mimalloc, but malloc came from /lib/x86_64-linux-gnu/libc.so.6; left out" in md,
              "the scaling run whose preload did not take is not reported")
        check("churn: 100 vs jemalloc 120 M ops/s (×0.83); prodcons: 42.0 vs mimalloc 32.0 M ops/s (×1.31)" in md,
              "target (g) lacks the measured figures")
        check("Rounds: 3, 0.5 s per case and round." in md, "the scaling section does not say how it was run")

        charts = ["alloc_pair.png", "alloc_cases.png", "alloc_threads.png", "map_ops.png", "map_latency.png"]
        for c in charts:
            path = os.path.join(full, c)
            if have_mpl:
                check(os.path.getsize(path) > 1000 if os.path.exists(path) else False, f"chart {c} not drawn")
                check(f"({c})" in md, f"chart {c} not linked from the report")
            else:
                check(not os.path.exists(path), f"stale chart {c} left behind")
        if not have_mpl:
            check("matplotlib is not available" in md, "the report does not say charts are missing")

        # Nothing but spanmap's own allocator runs, and no machine.json.
        bare = os.path.join(tmp, "bare")
        os.makedirs(os.path.join(bare, "raw"))
        for f in os.listdir(os.path.join(fixtures, "raw")):
            if f.startswith("alloc_spanmap_r"):
                shutil.copy(os.path.join(fixtures, "raw", f), os.path.join(bare, "raw"))
        md = run_report(report_py, bare)
        t = tables(md)
        for letter in "abcdefg":
            check(target_status(t, letter) == "not measured",
                  f"bare run, target ({letter}): want not measured, got {target_status(t, letter)!r}")
        expect(t, time, "pair/16", "spanmap", "20.0")
        check("Not measured: no map results." in md, "bare run: maps not reported as not measured")
        check("Not measured: no scaling_bench results." in md, "bare run: scaling not reported as not measured")

    if len(argv) == 4:
        # run.sh is only run for real by hand; here it must at least parse and answer --help.
        for args in (["-n", argv[3]], [argv[3], "--help"]):
            p = subprocess.run(["bash"] + args, capture_output=True, text=True)
            check(p.returncode == 0, f"bash {' '.join(args)} failed: {p.stderr.strip()}")

    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print("report pipeline: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
