package main

import (
	"fmt"

	"golang.org/x/sys/cpu"
)

// ymmSpin loads YMM0-YMM15 from pattern (16 registers of 32 bytes),
// counts iters down and returns a bit for each register whose 256 bits
// no longer equal its pattern. The interrupts, context switches and, in
// a guest, VM exits that land in the loop must leave the registers as
// they were.
//
//go:noescape
func ymmSpin(pattern *[16 * 32]byte, iters uint64) (lost uint32)

// ymmIters makes one round a few tens of milliseconds on hardware and
// under a second in an emulator.
const ymmIters = 1 << 22

// ymmCheck runs ymmSpin rounds until stop closes, then reports the rounds
// and the ones that lost a register's value on done. Without AVX2 it
// reports that instead.
func ymmCheck(stop <-chan struct{}, done chan<- string) {
	if !cpu.X86.HasAVX2 {
		done <- "workload: ymm: no AVX2 (or no OS support for its state)"
		return
	}
	var pattern [16 * 32]byte
	x := uint64(0x9E3779B97F4A7C15)
	for i := 0; i < len(pattern); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for b := 0; b < 8; b++ {
			pattern[i+b] = byte(x >> (8 * b))
		}
	}
	rounds, bad := 0, 0
	for {
		select {
		case <-stop:
			done <- fmt.Sprintf("workload: ymm rounds=%d bad=%d", rounds, bad)
			return
		default:
		}
		rounds++
		if lost := ymmSpin(&pattern, ymmIters); lost != 0 {
			bad++
			fmt.Printf("workload: ymm round %d: registers %#04x lost their values\n", rounds, lost)
		}
	}
}
