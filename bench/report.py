#!/usr/bin/env python3
"""Turns the raw results of bench/run.sh into bench/out/report.md and its charts.

    report.py OUT_DIR

reads every JSON under OUT_DIR/raw (Google Benchmark's JSON shape: a "context"
object and a "benchmarks" list whose entries carry custom counters as
top-level fields), the latency traces in OUT_DIR/latency/latency_<map>.csv and
OUT_DIR/machine.json, and writes OUT_DIR/report.md and OUT_DIR/*.png.

Why it works the way it does:

- Each file is one process run of one round. A figure in the report is the
  MEDIAN over rounds of that (benchmark, allocator or map), because a shared
  machine adds outliers in one direction only and the median ignores a few of
  them; the spread beside it, (max - min) / median, says how far to trust it.
- An allocator run is named by the file (alloc_<allocator>_r<k>.json) or by the
  context key run.sh passes (run_allocator); a thread-scaling run is
  scaling_<allocator>_r<k>.json (or says program "scaling_bench" in its
  context), its entries named <workload>/<threads> and carrying ops per second
  (items_per_second); everything else is a map run, whose benchmark names
  carry the map (<op>/<map>/<keytype>/<n>).
- Scaling figures are throughputs, so there, unlike everywhere else, higher is
  better; they are compared with the best peer of each case (the fastest of
  jemalloc, tcmalloc, mimalloc and glibc), not with each peer in turn, because
  "is spanmap the one to pick at this thread count" is the question.
- alloc_bench names the library its malloc came from; a file whose library is
  not the one it was run with (a preload that did not take) is left out, since
  its numbers belong to another allocator.
- Anything may be missing: a peer library that is not installed, no Go
  toolchain, a build without Abseil, a run that crashed half-way. A missing
  figure is a dash, a missing peer is listed as not measured, a target without
  its figures reads "not measured", and nothing stops the report; the notes at
  the end say what was skipped and why, from machine.json.
- The targets are judged on medians, case by case, with the rule and every
  figure printed next to the verdict, so a reader can disagree with the rule
  without re-running anything.
- Charts need matplotlib (Agg, no display). Without it the tables are still
  written, the report says the charts are missing, and stale charts of an
  earlier run are deleted so they cannot be mistaken for this one's.

Only the standard library and matplotlib are used, so Debian's python3 with
python3-matplotlib is enough.
"""

import csv
import json
import math
import os
import re
import statistics
import sys

# Display order; names not listed here are appended in alphabetical order.
ALLOCATORS = ["spanmap", "spanmap_sized", "jemalloc", "tcmalloc", "mimalloc", "glibc"]
MAPS = ["spanmap", "spanmap_std_alloc", "spanmap_jemalloc", "go_map", "absl_flat",
        "std_unordered", "std_pmr_unordered_spanmap"]
ALLOC_FAMILIES = ["pair", "batch_lifo", "batch_fifo", "batch_random", "realloc_growth",
                  "producer_consumer", "two_threads", "workload"]
SCALING_WORKLOADS = ["churn", "prodcons", "larson", "large"]
SCALING_LABELS = {
    "churn": "16 B–2 KiB, 1 in 64 freed by another thread",
    "prodcons": "producer → consumer pairs, 16 B–2 KiB",
    "larson": "larson-style server, 16 B–1 KiB",
    "large": "32 KiB–4 MiB, freed locally",
}
MAP_OPS = ["insert", "insert_reserved", "lookup_hit", "lookup_miss", "erase", "iterate", "workload", "workload_threads"]
KEY_TYPES = ["u64", "str"]
LATENCY_MAPS = ["spanmap", "go_map", "absl_flat", "std_unordered"]
BASE = "spanmap"  # every ratio is peer / BASE: above 1 means spanmap is faster
# spanmap's malloc run again with one setting changed (SPANMAP_CONF, set by
# run.sh): not peers, but the cost of a feature, read as a ratio to BASE in
# the same rounds. name -> (what, SPANMAP_CONF, cost as a ratio, limit).
VARIANTS = {
    "spanmap_prof": ("heap profiler on at 512 KiB", "prof:true",
                     lambda variant, base: variant / base, 1.05),
    "spanmap_noscav": ("background scavenger", "scavenger:false",
                       lambda variant, base: base / variant, 1.02),
}

# Counters kept from each benchmark entry. per_op is seconds per operation in
# the contract; it is stored in nanoseconds.
COUNTERS = ["rss_peak_bytes", "rss_start_bytes", "bytes_per_entry", "key_bytes_per_entry",
            "p50_ns", "p999_ns", "max_ns"]
TIME_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# Name components Google Benchmark appends (iterations:1, threads:2,
# min_time:0.5, real_time, ...) say how a case was run, not which case it is.
RUN_SUFFIXES = {"real_time", "process_time", "manual_time"}


class Results:
    """Samples keyed by (kind, case, who): kind is "alloc", "map" or "growth"."""

    def __init__(self):
        self.samples = {}
        self.notes = []            # problems met while reading, shown at the end
        self.unrecognised = set()  # benchmark names that fit no contract
        self.rss_notes = set()
        self.files = 0

    def add(self, kind, case, who, metric, value):
        if value is None or not isinstance(value, (int, float)) or math.isnan(value):
            return
        per = self.samples.setdefault((kind, case, who), {})
        per.setdefault(metric, []).append(float(value))

    def values(self, kind, case, who, metric):
        return self.samples.get((kind, case, who), {}).get(metric, [])

    def median(self, kind, case, who, metric):
        v = self.values(kind, case, who, metric)
        return statistics.median(v) if v else None

    def spread(self, kind, case, who, metric):
        v = self.values(kind, case, who, metric)
        if len(v) < 2:
            return None
        m = statistics.median(v)
        return (max(v) - min(v)) / m if m else None

    def whos(self, kind):
        return {w for (k, _, w) in self.samples if k == kind}

    def cases(self, kind):
        return {c for (k, c, _) in self.samples if k == kind}


def ordered(names, preferred):
    names = set(names)
    return [n for n in preferred if n in names] + sorted(names - set(preferred))


def case_tokens(name):
    return [t for t in name.split("/") if t and ":" not in t and t not in RUN_SUFFIXES]


def per_op_ns(entry):
    if isinstance(entry.get("per_op"), (int, float)):
        return entry["per_op"] * 1e9
    # Not in the contract, but a program that forgot the counter still shows
    # its wall time per iteration rather than nothing.
    t, unit = entry.get("real_time"), entry.get("time_unit", "ns")
    if isinstance(t, (int, float)) and unit in TIME_UNIT_NS:
        return t * TIME_UNIT_NS[unit]
    return None


ALLOC_FILE = re.compile(r"^alloc_(.+)_r(\d+)\.json$")
SCALING_FILE = re.compile(r"^scaling_(.+)_r(\d+)\.json$")


def allocator_of(path, ctx):
    if ctx.get("run_allocator"):
        return ctx["run_allocator"]
    m = ALLOC_FILE.match(os.path.basename(path)) or SCALING_FILE.match(os.path.basename(path))
    if m:
        return m.group(1)
    if ctx.get("api") == "spanmap_sized":
        return "spanmap_sized"
    return ctx.get("malloc_library")


def preload_ok(res, path, who, ctx):
    """alloc_bench names the file its malloc comes from (malloc_library). If
    that is not the library run.sh preloaded, the numbers are another
    allocator's: the file is left out, and the report says so."""
    seen = os.path.basename(str(ctx.get("malloc_library", ""))).lower()
    if not seen:
        return True
    # glibc and spanmap's own API run with nothing preloaded: malloc is libc's.
    expect = {"glibc": "libc.", "spanmap_sized": "libc.", "spanmap": "spanmap"}.get(who, who.lower())
    if who in VARIANTS:
        expect = "spanmap"
    if expect in seen or seen == who.lower():
        return True
    res.notes.append(f"{os.path.basename(path)}: run as {who}, but malloc came from "
                     f"{ctx.get('malloc_library')}; left out")
    return False


def read_raw(out_dir):
    res = Results()
    raw = os.path.join(out_dir, "raw")
    paths = []
    for top, _, files in os.walk(raw):
        paths += [os.path.join(top, f) for f in files if f.endswith(".json")]
    for path in sorted(paths):
        try:
            with open(path) as f:
                data = json.load(f)
            entries = data.get("benchmarks", [])
            ctx = data.get("context", {}) or {}
        except (OSError, ValueError, AttributeError) as e:
            # A process that crashed leaves half a JSON file.
            res.notes.append(f"{os.path.relpath(path, out_dir)}: unreadable ({e.__class__.__name__}); skipped")
            continue
        res.files += 1
        base = os.path.basename(path)
        if base.startswith("scaling_") or ctx.get("program") == "scaling_bench":
            read_scaling(res, path, ctx, entries)
            continue
        is_alloc = base.startswith("alloc_") or "run_allocator" in ctx
        who = allocator_of(path, ctx) if is_alloc else None
        if is_alloc:
            if not who:
                res.notes.append(f"{base}: allocator unknown; skipped")
                continue
            if not preload_ok(res, path, who, ctx):
                continue
            reset = ctx.get("rss_peak_reset")
            if reset and not str(reset).startswith("per case"):
                res.rss_notes.add(f"{who}: peak RSS is since process start ({reset}), not per case")
        for e in entries:
            if not isinstance(e, dict) or e.get("run_type") == "aggregate" or e.get("error_occurred"):
                continue
            name = e.get("name") or e.get("run_name") or ""
            tok = case_tokens(name)
            if is_alloc:
                kind, case, w = ("variant" if who in VARIANTS else "alloc"), "/".join(tok), who
            elif len(tok) == 2 and tok[0] == "growth_latency":
                kind, case, w = "growth", "growth_latency", tok[1]
            elif len(tok) == 4 and tok[3].isdigit():
                kind, case, w = "map", (tok[0], tok[2], int(tok[3])), tok[1]
            else:
                res.unrecognised.add(name)
                continue
            res.add(kind, case, w, "per_op_ns", per_op_ns(e))
            for c in COUNTERS:
                res.add(kind, case, w, c, e.get(c))
    return res


def read_scaling(res, path, ctx, entries):
    """scaling_bench's entries: case (workload, threads), metric ops_per_s."""
    base = os.path.basename(path)
    who = allocator_of(path, ctx)
    if not who:
        res.notes.append(f"{base}: allocator unknown; skipped")
        return
    if not preload_ok(res, path, who, ctx):
        return
    for e in entries:
        if not isinstance(e, dict) or e.get("run_type") == "aggregate" or e.get("error_occurred"):
            continue
        name = e.get("name") or ""
        tok = name.split("/")
        workload = e.get("workload") or tok[0]
        threads = e.get("threads")
        if not isinstance(threads, int) and len(tok) == 2 and tok[1].isdigit():
            threads = int(tok[1])
        if not workload or not isinstance(threads, int):
            res.unrecognised.add(name)
            continue
        res.add("scaling", (workload, threads), who, "ops_per_s", e.get("items_per_second"))


def read_latency(out_dir):
    """latency_<map>.csv: first_insert_index,max_ns,p50_ns per window of inserts."""
    traces = {}
    d = os.path.join(out_dir, "latency")
    if not os.path.isdir(d):
        return traces
    for f in sorted(os.listdir(d)):
        m = re.match(r"^latency_(.+)\.csv$", f)
        if not m:
            continue
        rows = []
        with open(os.path.join(d, f), newline="") as fh:
            for r in csv.reader(fh):
                try:
                    rows.append((int(float(r[0])), float(r[1]), float(r[2]) if len(r) > 2 else None))
                except (ValueError, IndexError):
                    continue  # a header line, or a blank one
        if rows:
            traces[m.group(1)] = rows
    return traces


# ---------------------------------------------------------------- formatting

def fnum(x):
    if x is None:
        return "—"
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fspread(s):
    return "" if s is None else f" ({s * 100:.0f}%)"


def fratio(r):
    if r is None:
        return "—"
    # Bold where spanmap is the slower one, so losses stand out in a long table.
    return f"**{r:.2f}**" if r < 1 else f"{r:.2f}"


def fsize(n):
    for div, suf in ((1 << 20, "M"), (1 << 10, "K")):
        if n >= div and n % div == 0:
            return f"{n // div}{suf}"
    return str(n)


def fcount(n):
    for div, suf in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suf}"
    return str(n)


def fbytes(b):
    return "—" if b is None else f"{b / (1 << 20):.1f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def ratio(res, kind, case, peer, metric="per_op_ns"):
    a = res.median(kind, case, peer, metric)
    b = res.median(kind, case, BASE, metric)
    return a / b if a is not None and b else None


def alloc_case_key(case):
    tok = case.split("/")
    fam = tok[0]
    fi = ALLOC_FAMILIES.index(fam) if fam in ALLOC_FAMILIES else len(ALLOC_FAMILIES)
    size = int(tok[1]) if len(tok) > 1 and tok[1].isdigit() else -1
    return (fi, fam, size, case)


def alloc_label(case):
    tok = case.split("/")
    if len(tok) == 2 and tok[1].isdigit():
        return f"{tok[0]}/{fsize(int(tok[1]))}"
    return case


# ---------------------------------------------------------------- sections

def header(machine, res):
    m = machine
    lines = ["# spanmap benchmark report", ""]
    if not m:
        lines += ["No machine.json: machine and run details unknown.", ""]
    else:
        when = m.get("date", "unknown date")
        if m.get("duration_s") is not None:
            when += f", took {int(m['duration_s']) // 60} min {int(m['duration_s']) % 60} s"
        commit = m.get("git_commit", "unknown")
        if m.get("git_dirty"):
            commit += " (with uncommitted changes)"
        lines.append(f"- run: {when}; commit {commit}; build type {m.get('build_type', '?')}"
                     + ("; **quick smoke run: tiny sizes and times, not for conclusions**" if m.get("quick") else ""))
        lines.append(f"- machine: {m.get('cpu_model', '?')}, {m.get('nproc', '?')} CPUs"
                     + (f" (load average {m['load_at_start']} at the start)" if m.get("load_at_start") else "")
                     + f"; kernel {m.get('kernel', '?')}; glibc {m.get('glibc', '?')}; {m.get('compiler', '?')}")
        libs = m.get("libraries", {}) or {}
        parts = []
        for name in ALLOCATORS:
            lib = libs.get(name)
            if isinstance(lib, dict):
                parts.append(f"{name} {lib.get('version') or '?'}" + (f" ({lib['package']})" if lib.get("package") else ""))
        if parts:
            lines.append("- peers: " + "; ".join(parts))
        if m.get("go_version"):
            lines.append(f"- Go: {m['go_version']}")
        if m.get("benchmark_library"):
            lines.append(f"- Google Benchmark: {m['benchmark_library']}")
    failed = (machine or {}).get("failed_runs") or []
    if failed:
        lines += ["", f"**{len(failed)} run(s) failed** and are missing from the figures; see the run notes."]
    rounds = (machine or {}).get("rounds")
    counts = [len(v) for per in res.samples.values() for v in per.values()]
    lo, hi = (min(counts), max(counts)) if counts else (0, 0)
    lines += ["", f"Rounds: {rounds if rounds is not None else 'unknown'} planned; "
              f"{lo if lo == hi else f'{lo}–{hi}'} sample(s) per figure.", "",
              "Every figure is the median over interleaved rounds — each allocator a separate process per "
              "round in shuffled order, the map programs alternating — on a shared machine, so "
              "differences of a few percent are noise. In parentheses: the spread over rounds, "
              "(max − min) / median. Ratios are peer / spanmap: above 1, spanmap is faster "
              "(or smaller); **bold** where spanmap loses.", ""]
    return "\n".join(lines) + "\n"


def entry_bytes(res, case, m):
    """Bytes per entry without the heap copy of the key text, if any."""
    b = res.median("map", case, m, "bytes_per_entry")
    k = res.median("map", case, m, "key_bytes_per_entry")
    return None if b is None else b - (k or 0.0)


def targets(res, machine):
    """Each target: (name, status, evidence)."""
    out = []

    # (a) small malloc/free pairs, spanmap (the malloc replacement) vs jemalloc.
    sizes = sorted(int(c.split("/")[1]) for c in res.cases("alloc")
                   if c.startswith("pair/") and c.split("/")[1].isdigit() and 8 <= int(c.split("/")[1]) <= 256)
    pairs = [(s, res.median("alloc", f"pair/{s}", BASE, "per_op_ns"),
              res.median("alloc", f"pair/{s}", "jemalloc", "per_op_ns")) for s in sizes]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    name = "(a) malloc/free pair, 8–256 B, at least as fast as jemalloc"
    if not pairs:
        out.append((name, "not measured", "needs pair/8…256 for spanmap and jemalloc"))
    else:
        bad = [p for p in pairs if p[1] > p[2]]
        geo = math.exp(statistics.mean(math.log(j / s) for _, s, j in pairs))
        ev = ", ".join(f"{s} B: {fnum(sp)} vs {fnum(j)} ns (×{j / sp:.2f})" for s, sp, j in pairs)
        ev += f"; geometric mean jemalloc/spanmap ×{geo:.2f}"
        if bad:
            ev += "; slower at " + ", ".join(f"{s} B" for s, _, _ in bad)
        out.append((name, "not met" if bad else "met", ev))

    # (b) insert and lookups: faster than Go, at least 2x std::unordered_map.
    name = "(b) map insert and lookup faster than Go's map and ≥ 2× std::unordered_map"
    parts, statuses = [], []
    for peer, good, label in (("go_map", lambda r: r > 1.0, "vs Go (need > 1)"),
                              ("std_unordered", lambda r: r >= 2.0, "vs std::unordered_map (need ≥ 2)")):
        cases = []
        for case in sorted(res.cases("map"), key=map_case_key):
            if case[0] not in ("insert", "lookup_hit", "lookup_miss"):
                continue
            r = ratio(res, "map", case, peer)
            if r is not None:
                cases.append((case, r))
        if not cases:
            statuses.append("not measured")
            parts.append(f"{label}: not measured")
            continue
        ok = [c for c in cases if good(c[1])]
        worst = min(cases, key=lambda c: c[1])
        statuses.append("met" if len(ok) == len(cases) else "not met")
        parts.append(f"{label}: {len(ok)} of {len(cases)} cases; worst ×{worst[1]:.2f} "
                     f"({worst[0][0]} {worst[0][1]} n={fcount(worst[0][2])})")
    st = "not met" if "not met" in statuses else ("not measured" if "not measured" in statuses else "met")
    out.append((name, st, "; ".join(parts)))

    # (c) worst single insert growing to 8M keys vs absl::flat_hash_map.
    name = "(c) worst insert at 8M keys ≥ 50× lower than absl::flat_hash_map's"
    sm = res.median("growth", "growth_latency", BASE, "max_ns")
    ab = res.median("growth", "growth_latency", "absl_flat", "max_ns")
    if sm is None or ab is None:
        out.append((name, "not measured", "needs growth_latency for spanmap and absl_flat"))
    else:
        ev = f"max {fnum(sm / 1e3)} µs vs {fnum(ab / 1e3)} µs (×{ab / sm:.1f})"
        nf = res.median("growth", "growth_latency", "noise_floor", "max_ns")
        if nf is not None:
            ev += f"; the machine's noise floor (same loop, no map): max {fnum(nf / 1e3)} µs"
        keys = (machine or {}).get("growth_keys")
        if keys:
            ev += f"; run with {fcount(int(keys))} keys, not 8M"
        rt = (machine or {}).get("realtime")
        ev += f"; at real-time priority ({rt})" if rt else "; at normal priority (run.sh --rt: real-time)"
        out.append((name, "met" if ab / sm >= 50 else "not met", ev))

    # (d) bytes per entry after plain inserts, vs Go's map. A Go map shares
    # the caller's string bytes; the C++ maps hold a heap copy of each key's
    # text, so that part (key_bytes_per_entry) is taken out before comparing.
    name = "(d) bytes per entry no more than Go's map"
    cases = []
    for case in sorted(res.cases("map"), key=map_case_key):
        if case[0] != "insert":
            continue
        a = entry_bytes(res, case, BASE)
        g = entry_bytes(res, case, "go_map")
        if a is not None and g is not None:
            cases.append((case, a, g))
    if not cases:
        out.append((name, "not measured", "needs insert bytes_per_entry for spanmap and go_map"))
    else:
        bad = [c for c in cases if c[1] > c[2]]
        ev = ", ".join(f"{c[0][1]} n={fcount(c[0][2])}: {fnum(c[1])} vs {fnum(c[2])}" for c in cases)
        if any(c[0][1] != "u64" for c in cases):
            ev += " (string keys: without the C++ map's copy of the key text)"
        out.append((name, "not met" if bad else "met", ev))

    # (e), (f): what a feature of spanmap's costs its own malloc, case by case.
    for letter, v in (("e", "spanmap_prof"), ("f", "spanmap_noscav")):
        what, _, _, limit = VARIANTS[v]
        name = f"({letter}) {what} costs < {round((limit - 1) * 100)}% on alloc_bench"
        costs = variant_costs(res, v)
        if not costs:
            out.append((name, "not measured", f"needs alloc_bench runs of spanmap and {v}"))
            continue
        geo = math.exp(statistics.mean(math.log(c) for _, c in costs))
        worst = sorted(costs, key=lambda c: -c[1])[:3]
        ev = (f"geometric mean over {len(costs)} cases ×{geo:.3f}; median case ×{statistics.median(c for _, c in costs):.3f}; "
              "highest: " + ", ".join(f"{alloc_label(c)} ×{r:.2f}" for c, r in worst))
        out.append((name, "met" if geo < limit else "not met", ev))

    # (g) two threads, on these 2-core machines: the cross-thread workloads.
    name = "(g) two threads: churn and producer → consumer at least as fast as the best peer"
    cases = [(w, 2) for w in ("churn", "prodcons")]
    got = [(c, best_peer(res, c)) for c in cases]
    got = [(c, b, res.median("scaling", c, BASE, "ops_per_s")) for c, b in got]
    if any(b is None or sm is None for _, b, sm in got):
        out.append((name, "not measured", "needs scaling_bench churn/2 and prodcons/2 for spanmap and a peer"))
    else:
        ev = "; ".join(f"{c[0]}: {fnum(sm / 1e6)} vs {b[0]} {fnum(b[1] / 1e6)} M ops/s (×{sm / b[1]:.2f})"
                       for c, b, sm in got)
        out.append((name, "met" if all(sm >= b[1] for _, b, sm in got) else "not met", ev))
    return out


def best_peer(res, case):
    """(allocator, median ops/s) of the fastest peer in a scaling case, or None."""
    best = None
    for w in res.whos("scaling"):
        if w == BASE:
            continue
        v = res.median("scaling", case, w, "ops_per_s")
        if v is not None and (best is None or v > best[1]):
            best = (w, v)
    return best


def variant_costs(res, v):
    """[(case, cost ratio)] for every alloc case both spanmap and variant v ran."""
    fn = VARIANTS[v][2]
    out = []
    for c in sorted(res.cases("variant"), key=alloc_case_key):
        a = res.median("variant", c, v, "per_op_ns")
        b = res.median("alloc", c, BASE, "per_op_ns")
        if a and b:
            out.append((c, fn(a, b)))
    return out


def variants_section(res):
    vs = [v for v in VARIANTS if variant_costs(res, v)]
    if not vs:
        return ""
    s = ["## What spanmap's own features cost", "",
         "spanmap's malloc run again in the same rounds with one setting changed. Cost is a ratio of "
         "medians: above 1, the feature makes that case slower by that factor.", ""]
    for v in vs:
        what, conf, _, _ = VARIANTS[v]
        s.append(f"- {what}: `{v}` = `SPANMAP_CONF={conf}`")
    s.append("")
    cases = sorted({c for v in vs for c, _ in variant_costs(res, v)}, key=alloc_case_key)
    costs = {v: dict(variant_costs(res, v)) for v in vs}
    rows = [[alloc_label(c)] + [fratio(costs[v].get(c)) for v in vs] for c in cases]
    s.append(table(["case"] + [VARIANTS[v][0] for v in vs], rows))
    return "\n".join(s) + "\n"


def targets_section(res, machine):
    rows = [(n, f"**{s}**" if s != "met" else s, ev) for n, s, ev in targets(res, machine)]
    return "## Targets\n\n" + table(["target", "status", "measured (spanmap vs peer)"], rows) + "\n"


def alloc_section(res, charts):
    cases = sorted(res.cases("alloc"), key=alloc_case_key)
    if not cases:
        return "## Allocators\n\nNot measured: no allocator results.\n\n"
    allocs = ordered(res.whos("alloc"), ALLOCATORS)
    missing = [a for a in ALLOCATORS if a not in allocs]
    s = ["## Allocators", ""]
    if missing:
        s += ["Not measured: " + ", ".join(missing) + ".", ""]
    s += ["### Time per operation (ns)", ""]
    rows = []
    for c in cases:
        rows.append([alloc_label(c)] + [fnum(res.median("alloc", c, a, "per_op_ns")) +
                                        fspread(res.spread("alloc", c, a, "per_op_ns")) for a in allocs])
    s.append(table(["case"] + allocs, rows))
    peers = [a for a in allocs if a != BASE]
    if BASE in allocs and peers:
        s += ["### Time as a ratio to spanmap (peer / spanmap; above 1: spanmap faster)", ""]
        rows = [[alloc_label(c)] + [fratio(ratio(res, "alloc", c, p)) for p in peers] for c in cases]
        s.append(table(["case"] + peers, rows))
    else:
        s += ["Ratios not computed: spanmap itself was not measured.", ""]
    rss_cases = [c for c in cases if any(res.values("alloc", c, a, "rss_peak_bytes") for a in allocs)]
    if rss_cases:
        s += ["### Peak RSS (MiB)", "",
              "The process's high-water mark (VmHWM) over the case, its peak reset as the case starts; "
              "it includes what earlier cases left behind and the allocator has not returned."]
        s += [f"Note — {n}." for n in sorted(res.rss_notes)] + [""]
        rows = [[alloc_label(c)] + [fbytes(res.median("alloc", c, a, "rss_peak_bytes")) for a in allocs]
                for c in rss_cases]
        s.append(table(["case"] + allocs, rows))
    s += [chart_refs(charts, ["alloc_pair.png", "alloc_cases.png"]), ""]
    return "\n".join(s) + "\n"


def scaling_case_key(case):
    w, t = case
    return (SCALING_WORKLOADS.index(w) if w in SCALING_WORKLOADS else len(SCALING_WORKLOADS), w, t)


def scaling_section(res, machine, charts):
    cases = sorted(res.cases("scaling"), key=scaling_case_key)
    if not cases:
        return "## Thread scaling\n\nNot measured: no scaling_bench results.\n\n"
    allocs = ordered(res.whos("scaling"), ALLOCATORS)
    missing = [a for a in ALLOCATORS if a not in allocs and a != "spanmap_sized"]
    m = machine or {}
    s = ["## Thread scaling", ""]
    if missing:
        s += ["Not measured: " + ", ".join(missing) + ".", ""]
    s += ["scaling_bench: every thread runs free for a fixed time; the figure is the whole process's "
          "allocations per second (each one also freed), in millions: higher is better. "
          + "; ".join(f"{w}: {SCALING_LABELS[w]}" for w in SCALING_WORKLOADS) + ". "
          "producer → consumer needs an even thread count."
          + (f" Rounds: {m['scaling_rounds']}, {m.get('scaling_time', '?')} s per case and round."
             if m.get("scaling_rounds") else ""), ""]
    s += ["### Throughput against threads (M ops/s)", ""]
    # Large objects run at thousands, not millions, per second: a third decimal below 1.
    fops = lambda v: "—" if v is None else (fnum(v / 1e6) if v >= 1e6 else f"{v / 1e6:.3f}")
    rows = [[c[0], str(c[1])] + [fops(v) + fspread(res.spread("scaling", c, a, "ops_per_s"))
                                 for a in allocs for v in [res.median("scaling", c, a, "ops_per_s")]]
            for c in cases]
    s.append(table(["workload", "threads"] + allocs, rows))
    if BASE in allocs and len(allocs) > 1:
        s += ["### Throughput as a ratio to the best peer (above 1: faster than every peer)", "",
              "Each allocator's median over the best peer's, the best peer being the fastest of the others "
              "in that case; **bold** where spanmap is not the fastest.", ""]
        rows = []
        for c in cases:
            b = best_peer(res, c)
            row = [c[0], str(c[1]), b[0] if b else "—"]
            for a in allocs:
                v = res.median("scaling", c, a, "ops_per_s")
                r = v / b[1] if v is not None and b else None
                row.append(fratio(r) if a == BASE else ("—" if r is None else f"{r:.2f}"))
            rows.append(row)
        s.append(table(["workload", "threads", "best peer"] + allocs, rows))
    s += [chart_refs(charts, ["alloc_threads.png"]), ""]
    return "\n".join(s) + "\n"


def map_case_key(case):
    op, kt, n = case
    return (MAP_OPS.index(op) if op in MAP_OPS else len(MAP_OPS), op,
            KEY_TYPES.index(kt) if kt in KEY_TYPES else len(KEY_TYPES), kt, n)


def map_section(res, charts):
    cases = sorted(res.cases("map"), key=map_case_key)
    growth_whos = res.whos("growth")
    if not cases and not growth_whos:
        return "## Maps\n\nNot measured: no map results.\n\n"
    maps = ordered(res.whos("map") | {w for w in growth_whos if not w.endswith("noise_floor")}, MAPS)
    missing = [m for m in MAPS if m not in maps]
    s = ["## Maps", ""]
    if missing:
        s += ["Not measured: " + ", ".join(missing) + ".", ""]
    peers = [m for m in maps if m != BASE]
    for kt in ordered({c[1] for c in cases}, KEY_TYPES):
        kcases = [c for c in cases if c[1] == kt]
        s += [f"### Time per operation, {kt} keys (ns)", ""]
        rows = [[c[0], fcount(c[2])] + [fnum(res.median("map", c, m, "per_op_ns")) +
                                       fspread(res.spread("map", c, m, "per_op_ns")) for m in maps]
                for c in kcases]
        s.append(table(["op", "n"] + maps, rows))
        if BASE in maps and peers:
            s += [f"### Time as a ratio to spanmap, {kt} keys (peer / spanmap; above 1: spanmap faster)", ""]
            rows = [[c[0], fcount(c[2])] + [fratio(ratio(res, "map", c, p)) for p in peers] for c in kcases]
            s.append(table(["op", "n"] + peers, rows))
    bcases = [c for c in cases if any(res.values("map", c, m, "bytes_per_entry") for m in maps)]
    if bcases:
        s += ["### Bytes per entry (all heaps, after the inserts; lower is better)", ""]
        rows = [[c[0], c[1], fcount(c[2])] + [fnum(res.median("map", c, m, "bytes_per_entry")) for m in maps]
                for c in bcases]
        s.append(table(["op", "keys", "n"] + maps, rows))
    kcases = [c for c in bcases if any(res.values("map", c, m, "key_bytes_per_entry") for m in maps)]
    if kcases:
        s += ["### Bytes per entry without the key text (string keys)", "",
              "A C++ map holds a heap copy of each string key's text; a Go map shares the caller's "
              "bytes. These are the figures above minus key_bytes_per_entry, to compare with Go's.", ""]
        rows = [[c[0], fcount(c[2])] + [fnum(entry_bytes(res, c, m)) for m in maps] for c in kcases]
        s.append(table(["op", "n"] + maps, rows))
    if growth_whos:
        s += ["### Growth latency: each insert timed, growing from an empty map", ""]
        rows = []
        base_max = res.median("growth", "growth_latency", BASE, "max_ns")
        for m in ordered(growth_whos, MAPS):
            g = lambda k: res.median("growth", "growth_latency", m, k)
            mx = g("max_ns")
            rel = fnum(mx / base_max) if mx is not None and base_max else "—"
            rows.append([m, fnum(g("p50_ns")), fnum(g("p999_ns")),
                         fnum(None if mx is None else mx / 1e3) + fspread(res.spread("growth", "growth_latency", m, "max_ns")),
                         rel])
        s.append(table(["map", "p50 (ns)", "p99.9 (ns)", "max (µs)", "max / spanmap's max"], rows))
        s += ["noise_floor (go_noise_floor in Go) is the same timing loop around no map at all: "
              "what the machine, and Go's runtime, add on their own.", ""]
    s += [chart_refs(charts, ["map_ops.png", "map_latency.png"]), ""]
    return "\n".join(s) + "\n"


def chart_refs(charts, names):
    if charts is None:
        return ""
    have = [n for n in names if n in charts]
    return "\n\n".join(f"![{n[:-4]}]({n})" for n in have)


def notes_section(res, machine, charts_note):
    lines = []
    m = machine or {}
    for what, why in sorted((m.get("skipped") or {}).items()):
        lines.append(f"- {what}: not measured — {why}")
    for f in m.get("failed_runs") or []:
        lines.append(f"- run failed: {f}")
    if m.get("keys_check"):
        lines.append(f"- same keys in the C++ and Go programs (bench/check_keys.sh): {m['keys_check']}")
    for order in m.get("round_orders") or []:
        lines.append(f"- order: {order}")
    lines += [f"- {n}" for n in res.notes]
    if res.unrecognised:
        lines.append("- names that fit no known shape (ignored): " + ", ".join(sorted(res.unrecognised)))
    if charts_note:
        lines.append(f"- {charts_note}")
    lines.append(f"- {res.files} result file(s) read.")
    return "## Run notes\n\n" + "\n".join(lines) + "\n"


# ---------------------------------------------------------------- charts

CHARTS = ["alloc_pair.png", "alloc_cases.png", "alloc_threads.png", "map_ops.png", "map_latency.png"]


def draw_charts(res, traces, out_dir):
    """Returns (set of chart file names written, note for the report or None)."""
    for n in CHARTS:  # a chart this run cannot draw must not survive from an earlier run
        p = os.path.join(out_dir, n)
        if os.path.exists(p):
            os.remove(p)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return set(), f"charts not drawn: matplotlib is not available to {sys.executable}"
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    written = set()
    palette = plt.get_cmap("tab10").colors

    def save(fig, name, dpi=110, rect=None):
        fig.tight_layout(rect=rect) if rect else fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name), dpi=dpi)
        plt.close(fig)
        written.add(name)

    def colour(name, order):
        # Fixed per name within a chart family, so a peer keeps its colour
        # from one chart to the next; spanmap is first in both lists.
        i = order.index(name) if name in order else len(order) + sum(map(ord, name)) % 3
        return palette[i % len(palette)]

    def plain_log_axis(axis):
        # Log scale, but ticks at 1-2-5 steps that read 20 and 0.5, not
        # 2×10^1 and 5×10^-1, so a narrow range still gets labels.
        axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())

    # alloc_pair.png: malloc/free pair time against request size.
    pair = sorted((int(c.split("/")[1]), c) for c in res.cases("alloc")
                  if c.startswith("pair/") and len(c.split("/")) == 2 and c.split("/")[1].isdigit())
    if pair:
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for a in ordered(res.whos("alloc"), ALLOCATORS):
            pts = [(s, res.values("alloc", c, a, "per_op_ns")) for s, c in pair]
            pts = [(s, v) for s, v in pts if v]
            if not pts:
                continue
            xs = [s for s, _ in pts]
            ax.plot(xs, [statistics.median(v) for _, v in pts], marker="o", ms=3, label=a, color=colour(a, ALLOCATORS))
            ax.fill_between(xs, [min(v) for _, v in pts], [max(v) for _, v in pts], alpha=0.15, color=colour(a, ALLOCATORS))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        ax.set_xlabel("request size (bytes)")
        ax.set_ylabel("ns per malloc + free (median; band: min–max over rounds)")
        ax.set_title("malloc/free pair, one thread")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        save(fig, "alloc_pair.png")

    # alloc_cases.png: every other case, as ratios to spanmap, one row per family.
    others = [c for c in sorted(res.cases("alloc"), key=alloc_case_key) if not c.startswith("pair/")]
    peers = [a for a in ordered(res.whos("alloc"), ALLOCATORS) if a != BASE]
    # A family with several sizes gets a row; the one-case families
    # (realloc_growth, workload) share the last one.
    fam_of = lambda c: c.split("/")[0]
    fams = ordered({fam_of(c) for c in others}, ALLOC_FAMILIES)
    rows = [(f, [c for c in others if fam_of(c) == f]) for f in fams]
    single = [cs[0] for _, cs in rows if len(cs) == 1]
    rows = [(f, cs) for f, cs in rows if len(cs) > 1] + ([("other", single)] if single else [])
    if others and peers and BASE in res.whos("alloc"):
        fig, axes = plt.subplots(len(rows), 1, figsize=(11, 2.8 * len(rows) + 0.6), squeeze=False)
        width = 0.8 / len(peers)
        for ax, (fam, fc) in zip(axes[:, 0], rows):
            for i, p in enumerate(peers):
                ys = [ratio(res, "alloc", c, p) for c in fc]
                xs = [j + (i - (len(peers) - 1) / 2) * width for j in range(len(fc))]
                # Bars grow from 1 (a tie), up where spanmap wins, down where it loses.
                kept = [(x, y) for x, y in zip(xs, ys) if y]
                ax.bar([x for x, _ in kept], [y - 1 for _, y in kept], width, bottom=1,
                       label=p, color=colour(p, ALLOCATORS))
            ax.axhline(1.0, color="black", lw=0.8)
            ax.set_yscale("log")
            plain_log_axis(ax.yaxis)
            ax.set_xticks(range(len(fc)))
            ax.set_xticklabels([alloc_label(c).split("/", 1)[1] if fam != "other" and "/" in c else c
                                for c in fc], fontsize=8)
            ax.set_ylabel(f"{fam}\npeer / spanmap", fontsize=9)
            ax.grid(True, axis="y", which="both", alpha=0.3)
        axes[0, 0].legend(ncol=len(peers), fontsize=8, loc="upper left")
        axes[0, 0].set_title("time as a ratio to spanmap (above 1: spanmap faster)")
        save(fig, "alloc_cases.png")

    # alloc_threads.png: one panel per workload, throughput against threads.
    scases = res.cases("scaling")
    if scases:
        works = ordered({c[0] for c in scases}, SCALING_WORKLOADS)
        cols = min(len(works), 2)
        nrows = (len(works) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.8 * nrows), squeeze=False)
        for ax, w in zip(axes.flat, works):
            ts = sorted({c[1] for c in scases if c[0] == w})
            for a in ordered(res.whos("scaling"), ALLOCATORS):
                pts = [(t, res.values("scaling", (w, t), a, "ops_per_s")) for t in ts]
                pts = [(t, v) for t, v in pts if v]
                if not pts:
                    continue
                xs = [t for t, _ in pts]
                ax.plot(xs, [statistics.median(v) / 1e6 for _, v in pts], marker="o", ms=3, label=a,
                        color=colour(a, ALLOCATORS), lw=2.0 if a == BASE else 1.2)
                ax.fill_between(xs, [min(v) / 1e6 for _, v in pts], [max(v) / 1e6 for _, v in pts],
                                alpha=0.15, color=colour(a, ALLOCATORS))
            if len(ts) > 1:
                ax.set_xscale("log", base=2)
            ax.set_xticks(ts)
            ax.set_xticklabels([str(t) for t in ts])
            ax.set_ylim(bottom=0)
            ax.set_title(f"{w}: {SCALING_LABELS[w]}" if w in SCALING_LABELS else w, fontsize=10)
            ax.set_xlabel("threads")
            ax.set_ylabel("M ops/s (median; band: min–max)")
            ax.grid(True, alpha=0.3)
        for ax in list(axes.flat)[len(works):]:
            ax.set_axis_off()
        legend = {}
        for ax in axes.flat:
            for h, l in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(l, h)
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=max(len(legend), 1), fontsize=9)
        fig.suptitle("throughput against threads (higher is better)")
        save(fig, "alloc_threads.png", rect=(0, 0.05, 1, 1))

    # map_ops.png: one panel per (op, key type), time per op against n.
    mcases = res.cases("map")
    ops = ordered({c[0] for c in mcases}, MAP_OPS)
    kts = ordered({c[1] for c in mcases}, KEY_TYPES)
    if mcases:
        fig, axes = plt.subplots(len(ops), len(kts), figsize=(5.5 * len(kts), 3.0 * len(ops)), squeeze=False)
        for i, op in enumerate(ops):
            for j, kt in enumerate(kts):
                ax = axes[i, j]
                ns = sorted({c[2] for c in mcases if c[0] == op and c[1] == kt})
                if not ns:
                    ax.set_axis_off()
                    continue
                for m in ordered(res.whos("map"), MAPS):
                    pts = [(n, res.median("map", (op, kt, n), m, "per_op_ns")) for n in ns]
                    pts = [(n, v) for n, v in pts if v is not None]
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=m, color=colour(m, MAPS))
                ax.set_xscale("log")
                ax.set_yscale("log")
                plain_log_axis(ax.yaxis)
                ax.set_title(f"{op}, {kt} keys", fontsize=10)
                ax.set_ylabel("ns per op")
                ax.grid(True, which="both", alpha=0.3)
        for ax in axes[-1]:
            ax.set_xlabel("entries (n)")
        legend = {}
        for ax in axes.flat:
            for h, l in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(l, h)
        labels, handles = list(legend), list(legend.values())
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4) or 1, fontsize=9)
        save(fig, "map_ops.png", dpi=100, rect=(0, 0.04, 1, 1))

    # map_latency.png: the slowest insert of each window over the whole run.
    shown = [m for m in LATENCY_MAPS if m in traces]
    if shown:
        fig, ax = plt.subplots(figsize=(10, 5.5))
        for m in shown:
            rows = traces[m]
            ax.plot([r[0] for r in rows], [max(r[1], 1.0) for r in rows], lw=0.8, label=m, color=colour(m, MAPS))
        ax.set_yscale("log")
        ax.set_xlabel("insert index (start of each window)")
        ax.set_ylabel("slowest insert in the window (ns)")
        ax.set_title("per-insert latency while growing from empty (last round)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        save(fig, "map_latency.png")
    return written, None


def main(argv):
    if len(argv) != 2:
        print("usage: report.py OUT_DIR   (reads OUT_DIR/raw, writes OUT_DIR/report.md)", file=sys.stderr)
        return 2
    out_dir = argv[1]
    machine = None
    try:
        with open(os.path.join(out_dir, "machine.json")) as f:
            machine = json.load(f)
    except (OSError, ValueError):
        pass
    res = read_raw(out_dir)
    traces = read_latency(out_dir)
    charts, charts_note = draw_charts(res, traces, out_dir)
    if not traces:
        note = "no latency traces (OUT/latency/latency_<map>.csv): map_latency.png not drawn"
        charts_note = f"{charts_note}; {note}" if charts_note else note
    text = (header(machine, res) + targets_section(res, machine) + alloc_section(res, charts)
            + scaling_section(res, machine, charts) + variants_section(res) + map_section(res, charts) + notes_section(res, machine, charts_note))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"report.py: wrote {path}" + (f" and {len(charts)} chart(s)" if charts else " (no charts)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
