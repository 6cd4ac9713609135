// Command go: the Go half of the map benchmarks — Go's own map (the classic
// bucket map of Go 1.19-1.23, which spanmap::map ports) on the workload of
// bench/map_peers_bench.cpp, with the same keys, written in Google Benchmark's
// JSON shape so bench/report.py reads it like the C++ results.
//
//   go build -o OUT/map_bench_go . && OUT/map_bench_go -out=OUT/go.json
//
// Flags: -sizes=1000,10000,... (default 1000,10000,100000,1000000; the full
// run adds 10000000), -min_time=SECONDS (0.2), -growth_keys=N (8M),
// -latency_trace=DIR, -out=FILE (default: JSON on stdout), -filter=REGEXP,
// -repetitions=N, -noise_floor, -dump_keys=N.
//
// Names: <op>/go_map/<keytype>/<n> for op in insert, insert_reserved,
// lookup_hit, lookup_miss, erase, iterate and keytype u64 (map[uint64]uint64)
// or str (map[string]uint64); growth_latency/go_map. Every entry has per_op
// (seconds per operation); insert and insert_reserved have bytes_per_entry
// (ops.go says what it counts); growth_latency has p50_ns, p999_ns, max_ns.
//
// Timing follows Google Benchmark: a benchmark is run with 1 iteration, then
// with more as predicted, until the timed part of a run lasts -min_time; that
// last run is reported. Only the timed part is measured (map_peers_bench's
// manual time), with the monotonic clock.
//
// The collector is off in every timed section (debug.SetGCPercent(-1) for the
// whole of a benchmark; ops.go collects between iterations, untimed). With
// it on, a collection started by one iteration's garbage — or by the keys
// slices — would mark and sweep, and charge mark assists to inserts, in the
// middle of a later timed loop: the time would measure the collector at this
// heap size rather than the map, and the C++ maps have nothing like it. So
// the Go figures are the map's own cost; a real program adds its collector's.
//
// Not comparable, besides the collector: Go hashes with the runtime's AES
// hash and a per-map seed (each C++ map uses its own default hash too); a Go
// string key is a shared header, not a copy, so str insert allocates no key
// bytes (see bytesPerEntry).

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	flagSizes       = flag.String("sizes", "1000,10000,100000,1000000", "map sizes, comma-separated")
	flagMinTime     = flag.Float64("min_time", 0.2, "seconds of timed work per benchmark run (like --benchmark_min_time)")
	flagGrowthKeys  = flag.Int("growth_keys", 8<<20, "inserts in growth_latency")
	flagTrace       = flag.String("latency_trace", "", "directory for latency_go_map.csv (none if empty)")
	flagOut         = flag.String("out", "", "JSON output file (default: stdout, progress on stderr)")
	flagFilter      = flag.String("filter", "", "run only benchmarks whose name matches this regexp")
	flagRepetitions = flag.Int("repetitions", 1, "runs of each benchmark, each reported")
	flagNoiseFloor  = flag.Bool("noise_floor", false, "also run growth_latency/go_noise_floor")
	flagDumpKeys    = flag.Int("dump_keys", 0, "print the first N keys and the shuffle of N, then exit")
)

type entry struct {
	Name            string   `json:"name"`
	RunName         string   `json:"run_name"`
	RunType         string   `json:"run_type"`
	Repetitions     int      `json:"repetitions"`
	RepetitionIndex int      `json:"repetition_index"`
	Threads         int      `json:"threads"`
	Iterations      int      `json:"iterations"`
	RealTime        float64  `json:"real_time"`
	CPUTime         float64  `json:"cpu_time"`
	TimeUnit        string   `json:"time_unit"`
	PerOp           float64  `json:"per_op"`
	BytesPerEntry   *float64 `json:"bytes_per_entry,omitempty"`
	P50ns           *float64 `json:"p50_ns,omitempty"`
	P999ns          *float64 `json:"p999_ns,omitempty"`
	MaxNs           *float64 `json:"max_ns,omitempty"`
	ErrorOccurred   bool     `json:"error_occurred,omitempty"`
	ErrorMessage    string   `json:"error_message,omitempty"`
}

type output struct {
	Context    map[string]interface{} `json:"context"`
	Benchmarks []entry                `json:"benchmarks"`
}

var (
	results []entry
	filter  *regexp.Regexp
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func wanted(name string) bool { return filter == nil || filter.MatchString(name) }

// measure runs op with growing iteration counts, as Google Benchmark's
// runner does (same prediction rule), and records the last run.
func measure(name string, opsPerIter int, op func(iters int) runResult, extra func(*entry)) {
	if !wanted(name) {
		return
	}
	for rep := 0; rep < *flagRepetitions; rep++ {
		old := debug.SetGCPercent(-1)
		runtime.GC()
		garbage = 0
		iters := 1
		var r runResult
		for {
			r = op(iters)
			s := r.real.Seconds()
			if s >= *flagMinTime || iters >= 1e9 || r.err != nil {
				break
			}
			mult := *flagMinTime * 1.4 / maxf(s, 1e-9)
			if s / *flagMinTime <= 0.1 {
				mult = 10
			}
			next := int(float64(iters)*mult + 0.5)
			if next <= iters {
				next = iters + 1
			}
			if next > 1e9 {
				next = 1e9
			}
			iters = next
		}
		debug.SetGCPercent(old)
		e := entry{
			Name: name, RunName: name, RunType: "iteration", Repetitions: *flagRepetitions,
			RepetitionIndex: rep, Threads: 1, Iterations: iters, TimeUnit: "ns",
			RealTime: float64(r.real.Nanoseconds()) / float64(iters),
			CPUTime:  float64(r.cpu.Nanoseconds()) / float64(iters),
			PerOp:    r.real.Seconds() / float64(iters) / float64(opsPerIter),
		}
		if r.err != nil {
			e.ErrorOccurred, e.ErrorMessage = true, r.err.Error()
		}
		if extra != nil && r.err == nil {
			extra(&e)
		}
		results = append(results, e)
		progress(e)
	}
}

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

func ptr(x float64) *float64 { return &x }

func progress(e entry) {
	line := fmt.Sprintf("%-40s %12d iters %14.1f ns/iter  per_op=%.3gns", e.Name, e.Iterations, e.RealTime, e.PerOp*1e9)
	if e.BytesPerEntry != nil {
		line += fmt.Sprintf(" bytes_per_entry=%.1f", *e.BytesPerEntry)
	}
	if e.MaxNs != nil {
		line += fmt.Sprintf(" p50_ns=%.0f p999_ns=%.0f max_ns=%.0f", *e.P50ns, *e.P999ns, *e.MaxNs)
	}
	if e.ErrorOccurred {
		line += " ERROR: " + e.ErrorMessage
	}
	fmt.Fprintln(os.Stderr, line)
}

func runOps[K comparable](keyType string, n int, ks keySet[K]) {
	name := func(op string) string { return fmt.Sprintf("%s/go_map/%s/%d", op, keyType, n) }
	for _, reserve := range []bool{false, true} {
		op := "insert"
		if reserve {
			op = "insert_reserved"
		}
		r := reserve
		measure(name(op), n, func(iters int) runResult { return insert(ks.hits, r, iters) },
			func(e *entry) { e.BytesPerEntry = ptr(bytesPerEntry(ks.hits, r)) })
	}
	// One filled map serves the read-only ops; built on first use, untimed
	// (the ops start their stopwatch after it).
	var m map[K]uint64
	filled := func() map[K]uint64 {
		if m == nil {
			m = make(map[K]uint64)
			fill(m, ks.hits)
		}
		return m
	}
	measure(name("lookup_hit"), n, func(iters int) runResult { return lookupHit(filled(), ks.probe, iters) }, nil)
	measure(name("lookup_miss"), n, func(iters int) runResult { return lookupMiss(filled(), ks.misses, iters) }, nil)
	measure(name("erase"), n, func(iters int) runResult { return erase(ks, iters) }, nil)
	measure(name("iterate"), n, func(iters int) runResult { return iterate(filled(), iters) }, nil)
}

func runGrowth(name, traceName string, run func([]uint64) latencyResult) {
	if !wanted(name) {
		return
	}
	keys := stream(*flagGrowthKeys, hitSeed)
	for rep := 0; rep < *flagRepetitions; rep++ {
		old := debug.SetGCPercent(-1)
		runtime.GC()
		c0 := cpuTime()
		r := run(keys)
		cpu := cpuTime() - c0
		debug.SetGCPercent(old)
		p50, p999, max := r.stats()
		n := len(keys)
		e := entry{
			Name: name, RunName: name, RunType: "iteration", Repetitions: *flagRepetitions,
			RepetitionIndex: rep, Threads: 1, Iterations: 1, TimeUnit: "ns",
			RealTime: float64(r.wall.Nanoseconds()), CPUTime: float64(cpu.Nanoseconds()),
			PerOp: r.wall.Seconds() / float64(n), P50ns: ptr(p50), P999ns: ptr(p999), MaxNs: ptr(max),
		}
		if *flagTrace != "" {
			if err := writeTrace(*flagTrace, traceName, r); err != nil {
				fmt.Fprintln(os.Stderr, "map_bench_go:", err)
			}
		}
		results = append(results, e)
		progress(e)
	}
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad size %q in -sizes", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "map_bench_go:", err)
	os.Exit(2)
}

func main() {
	flag.Parse()
	if flag.NArg() != 0 {
		fail(fmt.Errorf("unexpected arguments %v", flag.Args()))
	}
	if *flagDumpKeys > 0 {
		if err := dumpKeys(*flagDumpKeys); err != nil {
			fail(err)
		}
		return
	}
	sizes, err := parseSizes(*flagSizes)
	if err != nil {
		fail(err)
	}
	if *flagGrowthKeys <= 0 || *flagMinTime <= 0 || *flagRepetitions <= 0 {
		fail(fmt.Errorf("-growth_keys, -min_time and -repetitions must be positive"))
	}
	if *flagFilter != "" {
		if filter, err = regexp.Compile(*flagFilter); err != nil {
			fail(err)
		}
	}
	// One goroutine on one thread, like the C++ benchmark thread.
	runtime.LockOSThread()

	for _, n := range sizes {
		runOps("u64", n, u64Keys(n))
	}
	for _, n := range sizes {
		runOps("str", n, strKeys(n))
	}
	runGrowth("growth_latency/go_map", "go_map", growthMap)
	if *flagNoiseFloor {
		runGrowth("growth_latency/go_noise_floor", "go_noise_floor", growthNoise)
	}

	host, _ := os.Hostname()
	exe, _ := os.Executable()
	out := output{
		Context: map[string]interface{}{
			"date":               time.Now().Format(time.RFC3339),
			"host_name":          host,
			"executable":         exe,
			"num_cpus":           runtime.NumCPU(),
			"go_version":         runtime.Version(),
			"goos":               runtime.GOOS,
			"goarch":             runtime.GOARCH,
			"gomaxprocs":         runtime.GOMAXPROCS(0),
			"gc_in_timed_parts":  "off (debug.SetGCPercent(-1); collected between iterations)",
			"min_time":           *flagMinTime,
			"growth_keys":        strconv.Itoa(*flagGrowthKeys),
			"library_build_type": "release",
		},
		Benchmarks: results,
	}
	if out.Benchmarks == nil {
		out.Benchmarks = []entry{}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		fail(err)
	}
	data = append(data, '\n')
	if *flagOut == "" {
		_, err = os.Stdout.Write(data)
	} else {
		err = os.WriteFile(*flagOut, data, 0o644)
	}
	if err != nil {
		fail(err)
	}
}
