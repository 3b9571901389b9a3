package main

import (
	"encoding/binary"
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

// zmmSpin is ymmSpin for ZMM16-ZMM31 and the opmask registers K1-K7
// (AVX-512F): bit n of lost is ZMM(16+n), bit 16+n is K(n+1).
//
//go:noescape
func zmmSpin(pattern *[16 * 64]byte, masks *[7]uint16, iters uint64) (lost uint32)

// ymmIters makes one round a few tens of milliseconds on hardware and
// under a second in an emulator.
const ymmIters = 1 << 22

// ymmCheck runs ymmSpin (and zmmSpin with AVX-512F) rounds until stop closes, then reports the rounds
// and the ones that lost a register's value on done. Without AVX2 it
// reports that instead.
func ymmCheck(stop <-chan struct{}, done chan<- string) {
	if !cpu.X86.HasAVX2 {
		done <- "workload: ymm: no AVX2 (or no OS support for its state)"
		return
	}
	var pattern [16 * 32]byte
	var zpattern [16 * 64]byte
	var masks [7]uint16
	x := uint64(0x9E3779B97F4A7C15)
	next := func() uint64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	for i := 0; i < len(pattern); i += 8 {
		binary.LittleEndian.PutUint64(pattern[i:], next())
	}
	for i := 0; i < len(zpattern); i += 8 {
		binary.LittleEndian.PutUint64(zpattern[i:], next())
	}
	for i := range masks {
		masks[i] = uint16(next()) | 1 // never 0, K's reset value
	}
	zmm := cpu.X86.HasAVX512F
	rounds, bad := 0, 0
	for {
		select {
		case <-stop:
			done <- fmt.Sprintf("workload: ymm rounds=%d bad=%d avx512=%v", rounds, bad, zmm)
			return
		default:
		}
		rounds++
		if lost := ymmSpin(&pattern, ymmIters); lost != 0 {
			bad++
			fmt.Printf("workload: ymm round %d: registers %#04x lost their values\n", rounds, lost)
		}
		if !zmm {
			continue
		}
		if lost := zmmSpin(&zpattern, &masks, ymmIters); lost != 0 {
			bad++
			fmt.Printf("workload: ymm round %d: ZMM16-31 %#04x, K1-7 %#02x lost their values\n", rounds, lost&0xFFFF, lost>>16)
		}
	}
}
