// rdtsc for the growth-latency loop: the instruction map_peers_bench reads
// through __rdtsc(), so both programs time inserts with the same counter.

#include "textflag.h"

// func rdtsc() uint64
TEXT ·rdtsc(SB), NOSPLIT, $0-8
	RDTSC
	SHLQ $32, DX
	ORQ DX, AX
	MOVQ AX, ret+0(FP)
	RET
