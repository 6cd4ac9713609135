// The six map operations, generic over the key type: Go 1.19 compiles each
// instantiation for its own key shape, so map[uint64]uint64 still goes
// through the runtime's *_fast64 entry points and map[string]uint64 through
// *_faststr, exactly as non-generic code would (checked with -gcflags=-S).
//
// Each function runs its operation iters times and returns only the time of
// the timed part, as map_peers_bench's manual time does: a map is made and
// filled inside the timed part for insert, outside it for erase; nothing is
// ever freed explicitly (the collector is off, see main.go), so the garbage
// of finished iterations is collected between them, untimed.

package main

import (
	"fmt"
	"runtime"
	"time"
)

// sink keeps results observable so the compiler cannot drop the loops.
var sink uint64

// garbage counts entries of dead maps since the last collection. With the
// collector off nothing is reused until a collection, so each new map would
// land on pages never touched before and pay the kernel's page faults, which
// the C++ maps (whose freed memory is reused at once) do not. So we collect
// once a few MiB of dead maps have piled up: often enough that the next maps
// reuse warm memory, rarely enough (for small maps) that the collections do
// not dominate the run's wall time. Large maps get a collection per iteration.
var garbage int

const garbageBudget = 1 << 16

func dropped(entries int) {
	garbage += entries
	if garbage >= garbageBudget {
		runtime.GC()
		garbage = 0
	}
}

func fill[K comparable](m map[K]uint64, keys []K) {
	for i, k := range keys {
		m[k] = uint64(i)
	}
}

func valueSum(n int) uint64 { return uint64(n) * (uint64(n) - 1) / 2 }

// stopwatch adds up the wall and CPU time of the timed parts.
type stopwatch struct {
	real, cpu time.Duration
	t0        time.Time
	c0        time.Duration
}

func (s *stopwatch) start() { s.c0 = cpuTime(); s.t0 = time.Now() }
func (s *stopwatch) stop() {
	s.real += time.Since(s.t0)
	s.cpu += cpuTime() - s.c0
}

// The fault an iteration found (wrong sums, lost keys), or nil.
type runResult struct {
	real, cpu time.Duration
	err       error
}

func insert[K comparable](keys []K, reserve bool, iters int) runResult {
	var sw stopwatch
	var err error
	for i := 0; i < iters; i++ {
		sw.start()
		m := newMap[K](len(keys), reserve)
		fill(m, keys)
		sw.stop()
		if len(m) != len(keys) {
			err = fmt.Errorf("insert lost keys")
		}
		dropped(len(keys))
	}
	return runResult{sw.real, sw.cpu, err}
}

func lookupHit[K comparable](m map[K]uint64, probe []K, iters int) runResult {
	var sw stopwatch
	var err error
	for i := 0; i < iters; i++ {
		sw.start()
		var sum uint64
		for _, k := range probe {
			sum += m[k]
		}
		sw.stop()
		sink += sum
		if sum != valueSum(len(probe)) {
			err = fmt.Errorf("lookup_hit found wrong values")
		}
	}
	return runResult{sw.real, sw.cpu, err}
}

func lookupMiss[K comparable](m map[K]uint64, misses []K, iters int) runResult {
	var sw stopwatch
	var err error
	for i := 0; i < iters; i++ {
		sw.start()
		found := 0
		for _, k := range misses {
			if _, ok := m[k]; ok {
				found++
			}
		}
		sw.stop()
		sink += uint64(found)
		if found != 0 {
			err = fmt.Errorf("lookup_miss found a key (a hit and a miss stream share a key?)")
		}
	}
	return runResult{sw.real, sw.cpu, err}
}

func erase[K comparable](ks keySet[K], iters int) runResult {
	var sw stopwatch
	var err error
	for i := 0; i < iters; i++ {
		m := make(map[K]uint64)
		fill(m, ks.hits)
		sw.start()
		for _, k := range ks.probe {
			delete(m, k)
		}
		sw.stop()
		if len(m) != 0 {
			err = fmt.Errorf("erase left keys behind")
		}
		dropped(len(ks.hits))
	}
	return runResult{sw.real, sw.cpu, err}
}

func iterate[K comparable](m map[K]uint64, iters int) runResult {
	var sw stopwatch
	var err error
	for i := 0; i < iters; i++ {
		sw.start()
		var sum uint64
		for _, v := range m {
			sum += v
		}
		sw.stop()
		sink += sum
		if sum != valueSum(len(m)) {
			err = fmt.Errorf("iterate summed wrong values")
		}
	}
	return runResult{sw.real, sw.cpu, err}
}

// bytesPerEntry: HeapAlloc's growth across building one map as insert does,
// with every collection finished on both sides and the map still reachable.
// It counts the map's own memory (hmap, bucket arrays including an old array
// still being evacuated, overflow buckets) at Go's size classes. Key bytes of
// str maps are not in it: a Go map keeps the string header and shares the
// bytes the keys slice already holds (the C++ maps copy them; see the C++
// key_bytes_per_entry).
func bytesPerEntry[K comparable](keys []K, reserve bool) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newMap[K](len(keys), reserve)
	fill(m, keys)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(m)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(keys))
}

// newMap is make(map[K]uint64), sized for n entries when reserve is set
// (the C++ maps' reserve(n)).
func newMap[K comparable](n int, reserve bool) map[K]uint64 {
	if reserve {
		return make(map[K]uint64, n)
	}
	return make(map[K]uint64)
}
