// The keys, bit for bit those of bench/map_peers_bench.cpp (bench/check_keys.sh
// compares the two programs' -dump_keys output): splitmix64 streams from fixed
// seeds, a Fisher-Yates shuffle driven by a third stream, and a string per key
// derived from the key alone. Change one side and the other must follow.

package main

import (
	"bufio"
	"fmt"
	"math/bits"
	"os"
)

const (
	hitSeed     = 1 // the keys put into the maps
	missSeed    = 2 // keys looked up and not found
	shuffleSeed = 3 // the probe and erase order
)

// Vigna's splitmix64: a counter through a bijective mixer, so one stream
// never repeats a key within 2^64 draws.
type splitmix64 struct{ state uint64 }

func (s *splitmix64) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func stream(n int, seed uint64) []uint64 {
	rng := splitmix64{seed}
	v := make([]uint64, n)
	for i := range v {
		v[i] = rng.next()
	}
	return v
}

// Fisher-Yates from the top with j = next() % (i + 1), as the C++ side does.
func shuffled(keys []uint64) []uint64 {
	v := append([]uint64(nil), keys...)
	rng := splitmix64{shuffleSeed}
	for i := len(v); i > 1; i-- {
		j := rng.next() % uint64(i)
		v[i-1], v[j] = v[j], v[i-1]
	}
	return v
}

const hexDigits = "0123456789abcdef"
const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_" // 6 bits pick one

// 16 lowercase hex digits of k, then k % 17 characters, each from the low 6
// bits of k rotated right by 6 more per character: 16-32 bytes, distinct for
// distinct keys.
func keyString(k uint64) string {
	b := make([]byte, 16+k%17)
	for i := 0; i < 16; i++ {
		b[i] = hexDigits[(k>>(60-4*uint(i)))&15]
	}
	x := k
	for i := 16; i < len(b); i++ {
		b[i] = alphabet[x&63]
		x = bits.RotateLeft64(x, -6)
	}
	return string(b)
}

// Built anew from each list (the probe strings in probe order), so each
// list's bytes lie in its own order, as on the C++ side.
func asStrings(keys []uint64) []string {
	v := make([]string, len(keys))
	for i, k := range keys {
		v[i] = keyString(k)
	}
	return v
}

type keySet[K comparable] struct {
	hits   []K // the value of hits[i] is i
	probe  []K // hits, shuffled: lookup_hit and erase order
	misses []K
}

func u64Keys(n int) keySet[uint64] {
	hits := stream(n, hitSeed)
	return keySet[uint64]{hits, shuffled(hits), stream(n, missSeed)}
}

func strKeys(n int) keySet[string] {
	k := u64Keys(n)
	return keySet[string]{asStrings(k.hits), asStrings(k.probe), asStrings(k.misses)}
}

// The format of map_peers_bench --dump_keys, line for line.
func dumpKeys(n int) error {
	w := bufio.NewWriter(os.Stdout)
	k := u64Keys(n)
	for i, x := range k.hits {
		fmt.Fprintf(w, "hit %d %d %s\n", i, x, keyString(x))
	}
	for i, x := range k.misses {
		fmt.Fprintf(w, "miss %d %d %s\n", i, x, keyString(x))
	}
	for i, x := range k.probe {
		fmt.Fprintf(w, "probe %d %d\n", i, x)
	}
	return w.Flush()
}
