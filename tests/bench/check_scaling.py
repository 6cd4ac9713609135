#!/usr/bin/env python3
"""Checks the thread-scaling benchmark end to end, in a few seconds: not its
figures (timings prove nothing in a test) but that every case runs, says what
ran it, and that a pack made by bench/scaling.sh --pack runs on its own copies
of the libraries.

    check_scaling.py SCALING_BENCH SCALING_SH BUILD_DIR [LIBSPANMAP_MALLOC_SO]

1. scaling_bench with nothing preloaded, at 1 and 2 threads: the JSON names
   libc as the malloc, holds one entry per workload and thread count but
   prodcons/1 (a pair needs two threads), each with a positive rate, and the
   --context keys. In a sanitizer build (SPANMAP_SANITIZE in the environment)
   malloc is the sanitizer runtime's, and that is what the JSON must name.
2. The same under LD_PRELOAD of libspanmap_malloc.so (when given): malloc is
   spanmap's, and every block's header and trailer survived the cross-thread
   frees (scaling_bench aborts otherwise).
3. scaling.sh --pack into a temporary folder, then the pack's own scaling.sh
   with --libs on its lib/: glibc and spanmap run, each on the pack's copy of
   its library (the C library too: the pack brings its own loader), and
   scaling.md has a row per case with spanmap's ratio to the best peer.
4. Bad options are refused with exit status 2, not ignored.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def clean_env(**extra):
    # ctest may itself run under a preload (CI does): each run here chooses its own.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SPANMAP_CONF", "LD_LIBRARY_PATH")}
    env.update(extra)
    return env


def run(cmd, env, what):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        print(p.stdout, p.stderr, sep="\n")
        failures.append(f"{what}: exit {p.returncode}")
    return p


WORKLOADS = ["churn", "prodcons", "larson", "large"]
CASES = {(w, t) for w in WORKLOADS for t in (1, 2)} - {("prodcons", 1)}


def check_json(path, want_lib, who):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        failures.append(f"{who}: no readable JSON ({e})")
        return
    ctx = doc.get("context", {})
    check(want_lib(ctx.get("malloc_library", "")), f"{who}: malloc_library is {ctx.get('malloc_library')!r}")
    check(ctx.get("run_allocator") == who and ctx.get("program") == "scaling_bench",
          f"{who}: context lacks the keys given: {ctx}")
    got = {(e.get("workload"), e.get("threads")) for e in doc.get("benchmarks", [])}
    check(got == CASES, f"{who}: cases {sorted(got)}, want {sorted(CASES)}")
    for e in doc.get("benchmarks", []):
        check(e.get("name") == f"{e.get('workload')}/{e.get('threads')}", f"{who}: entry named {e.get('name')!r}")
        check(isinstance(e.get("items_per_second"), (int, float)) and e["items_per_second"] > 0,
              f"{who}: {e.get('name')} has no positive rate")
    # One entry per line: the pack's runner reads them with awk.
    with open(path) as f:
        lines = [l for l in f if '"items_per_second"' in l]
    check(len(lines) == len(CASES), f"{who}: entries are not one per line")


def main(argv):
    if len(argv) not in (4, 5):
        sys.exit("usage: check_scaling.py SCALING_BENCH SCALING_SH BUILD_DIR [LIBSPANMAP_MALLOC_SO]")
    bench, script, build = argv[1], argv[2], argv[3]
    preload = argv[4] if len(argv) == 5 else None
    quick = ["--threads", "1,2", "--time", "0.02"]
    with tempfile.TemporaryDirectory(prefix="spanmap_scaling_") as tmp:
        out = os.path.join(tmp, "glibc.json")
        run([bench, *quick, "--context", "run_allocator=glibc,run_round=1", "--out", out], clean_env(), "glibc run")
        plain = {"address": "libasan.", "thread": "libtsan."}.get(os.environ.get("SPANMAP_SANITIZE", ""), "libc.")
        check_json(out, lambda lib: os.path.basename(lib).startswith(plain), "glibc")

        if preload:
            out = os.path.join(tmp, "spanmap.json")
            run([bench, *quick, "--context", "run_allocator=spanmap", "--out", out],
                clean_env(LD_PRELOAD=preload), "spanmap run")
            check_json(out, lambda lib: os.path.realpath(lib) == os.path.realpath(preload), "spanmap")

            pack = os.path.join(tmp, "pack")
            run(["bash", script, "--pack", pack, "--build", build], clean_env(), "scaling.sh --pack")
            for f in ("scaling.sh", "bin/scaling_bench", "lib/libspanmap_malloc.so", "lib/libc.so.6", "MANIFEST"):
                check(os.path.isfile(os.path.join(pack, f)), f"the pack lacks {f}")
            res = os.path.join(tmp, "res")
            p = run([os.path.join(pack, "scaling.sh"), "--libs", os.path.join(pack, "lib"), "--out", res,
                     "--allocators", "glibc,spanmap", "--rounds", "1", *quick], clean_env(), "the pack's scaling.sh")
            for who, so in (("spanmap", "libspanmap_malloc.so"), ("glibc", "libc.so.6")):
                try:
                    with open(os.path.join(res, "raw", f"scaling_{who}_r1.json")) as f:
                        lib = json.load(f)["context"]["malloc_library"]
                except (OSError, ValueError, KeyError):
                    lib = None
                check(lib and os.path.realpath(lib) == os.path.realpath(os.path.join(pack, "lib", so)),
                      f"the pack's {who} run used {lib}, not the pack's copy")
            try:
                with open(os.path.join(res, "scaling.md")) as f:
                    md = f.read()
            except OSError:
                md = ""
            for w, t in sorted(CASES):
                # | workload | threads | glibc | spanmap | best peer | spanmap / best peer |
                check(re.search(rf"^\| {w} \| {t} \| [0-9.]+ \| [0-9.]+ \| glibc \| [0-9.]+ \|$", md, re.M),
                      f"scaling.md has no full row for {w}/{t}:\n{md}\n{p.stdout}")
            check(not re.search(r"^\| prodcons \| 1 \|", md, re.M), "scaling.md has a prodcons row at one thread")

        for bad in (["--threads", "0"], ["--workloads", "nope"], ["--bogus"]):
            p = subprocess.run([bench, *bad], env=clean_env(), capture_output=True, text=True, timeout=60)
            check(p.returncode == 2, f"scaling_bench {' '.join(bad)}: exit {p.returncode}, want 2")
        p = subprocess.run(["bash", script, "--rounds", "x"], env=clean_env(), capture_output=True, text=True)
        check(p.returncode != 0 and "--rounds" in p.stderr, "scaling.sh accepted --rounds x")
        p = subprocess.run(["bash", script, "--help"], env=clean_env(), capture_output=True, text=True)
        check(p.returncode == 0 and "--pack DIR" in p.stdout, "scaling.sh --help")

    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print("scaling benchmark: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
