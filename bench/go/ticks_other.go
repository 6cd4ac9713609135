// Without a cycle counter the latency loop reads the monotonic clock, as
// map_peers_bench does off x86-64; the calibration then finds 1 ns per tick.

//go:build !amd64

package main

import "time"

var epoch = time.Now()

func rdtsc() uint64 { return uint64(time.Since(epoch).Nanoseconds()) }
