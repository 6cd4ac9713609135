// The cycle counter, in assembly (ticks_amd64.s); other architectures read
// the monotonic clock instead (ticks_other.go), as map_peers_bench does.

package main

func rdtsc() uint64
