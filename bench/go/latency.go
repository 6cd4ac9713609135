// growth_latency/go_map: the time of each single insert while a map grows
// from empty to -growth_keys entries (u64 keys, the first keys of every other
// benchmark), read with the same cycle counter as map_peers_bench (rdtsc on
// amd64, see ticks_amd64.s) and calibrated to ns over the whole loop against
// the monotonic clock. Go's map grows incrementally (two old buckets
// evacuated per write), so its spikes come from allocating the new array and
// from the runtime; the collector is off here as everywhere timed, so no mark
// assist lands in an insert. -noise_floor adds growth_latency/go_noise_floor:
// the same loop around the C++ noise floor's arithmetic, which shows what the
// machine and the Go runtime (sysmon's preemption signals) add by themselves.
// It is off by default because bench/report.py would show it as a map.

package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

const traceWindow = 8192

type latencyResult struct {
	cost      []uint32 // ticks per insert
	nsPerTick float64
	wall      time.Duration
}

func growthMap(keys []uint64) latencyResult {
	cost := make([]uint32, len(keys))
	m := make(map[uint64]uint64)
	wall0 := time.Now()
	t0 := rdtsc()
	prev := t0
	for i, k := range keys {
		m[k] = uint64(i)
		now := rdtsc()
		cost[i] = clampTicks(now - prev)
		prev = now
	}
	wall := time.Since(wall0)
	sink += uint64(len(m))
	return latencyResult{cost, float64(wall.Nanoseconds()) / float64(prev-t0), wall}
}

// About an insert's worth of dependent arithmetic and no memory, as the C++
// no_map does.
func growthNoise(keys []uint64) latencyResult {
	cost := make([]uint32, len(keys))
	var x uint64 = 1
	var store [64]uint64
	wall0 := time.Now()
	t0 := rdtsc()
	prev := t0
	for i, k := range keys {
		for r := 0; r < 40; r++ {
			x = x*6364136223846793005 + k
		}
		store[i&63] = x
		now := rdtsc()
		cost[i] = clampTicks(now - prev)
		prev = now
	}
	wall := time.Since(wall0)
	sink += store[0] + store[63]
	return latencyResult{cost, float64(wall.Nanoseconds()) / float64(prev-t0), wall}
}

func clampTicks(t uint64) uint32 {
	if t > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(t)
}

// quantile sorts v in place.
func quantile(v []uint32, q float64) uint32 {
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v[int(q*float64(len(v)-1))]
}

func (r latencyResult) stats() (p50, p999, max float64) {
	sorted := append([]uint32(nil), r.cost...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	at := func(q float64) float64 { return float64(sorted[int(q*float64(len(sorted)-1))]) * r.nsPerTick }
	return at(0.5), at(0.999), float64(sorted[len(sorted)-1]) * r.nsPerTick
}

// The trace map_peers_bench writes: a header, then per window of 8192
// inserts its first index, its slowest insert and its median.
func writeTrace(dir, name string, r latencyResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "latency_"+name+".csv"))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "first_insert_index,max_ns,p50_ns")
	window := make([]uint32, 0, traceWindow)
	for first := 0; first < len(r.cost); first += traceWindow {
		last := first + traceWindow
		if last > len(r.cost) {
			last = len(r.cost)
		}
		window = append(window[:0], r.cost[first:last]...)
		var max uint32
		for _, c := range window {
			if c > max {
				max = c
			}
		}
		p50 := quantile(window, 0.5)
		fmt.Fprintf(w, "%d,%.1f,%.1f\n", first, float64(max)*r.nsPerTick, float64(p50)*r.nsPerTick)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
