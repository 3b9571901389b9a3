package main

import (
	"fmt"

	"github.com/doppel-ft/doppel/cpu/xstate"
)

// ymmIters makes one round a few tens of milliseconds on hardware and
// under a second in an emulator.
const ymmIters = 1 << 22

// ymmCheck runs xstate rounds (YMM0-15 and, with AVX-512F, ZMM16-31 and
// K1-7 held across a busy loop) until stop closes, then reports the rounds
// and the ones that lost a register's value on done. Without AVX2 it
// reports that instead.
func ymmCheck(stop <-chan struct{}, done chan<- string) {
	if !xstate.Supported() {
		done <- "workload: ymm: no AVX2 (or no OS support for its state)"
		return
	}
	p := xstate.NewPattern(0x9E3779B97F4A7C15)
	rounds, bad := 0, 0
	for {
		select {
		case <-stop:
			done <- fmt.Sprintf("workload: ymm rounds=%d bad=%d avx512=%v", rounds, bad, xstate.HasAVX512())
			return
		default:
		}
		rounds++
		if lost := p.Round(ymmIters); lost.Any() {
			bad++
			fmt.Printf("workload: ymm round %d: %v lost their values\n", rounds, lost)
		}
	}
}
