// Package xstate checks that a thread's vector registers keep their values
// while the thread is interrupted, switched out, sent signals or, in a
// guest, taken out by VM exits: what an operating system or hypervisor must
// save and restore with XSAVE/XRSTOR (Intel SDM Vol. 1 ch. 13). A Pattern
// is loaded into YMM0-YMM15 and, with AVX-512F, into ZMM16-ZMM31 and the
// opmask registers K1-K7; the registers are held across a busy loop with
// no calls and compared afterwards.
//
// doppel's boot self-test runs it on many threads at once to check the boot
// layer's thread switch and signal frames; the Linux guest's workload runs
// it (workload -ymm) to check the hypervisor's switch of guest state.
package xstate

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/cpu"
)

// Supported reports whether this CPU and its operating system give the
// thread AVX2 state (CPUID and XGETBV, as the Go runtime checks them).
func Supported() bool { return cpu.X86.HasAVX && cpu.X86.HasAVX2 }

// HasAVX512 reports whether rounds also hold ZMM16-ZMM31 and K1-K7.
func HasAVX512() bool { return Supported() && cpu.X86.HasAVX512F }

// Pattern is the values a round loads.
type Pattern struct {
	YMM  [16 * 32]byte // YMM0-YMM15
	ZMM  [16 * 64]byte // ZMM16-ZMM31
	Mask [7]uint16     // K1-K7, never 0 (the registers' reset value)
}

// NewPattern fills a pattern from seed with xorshift64, so threads with
// different seeds hold different values.
func NewPattern(seed uint64) *Pattern {
	x := seed | 1
	next := func() uint64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	p := new(Pattern)
	for i := 0; i < len(p.YMM); i += 8 {
		binary.LittleEndian.PutUint64(p.YMM[i:], next())
	}
	for i := 0; i < len(p.ZMM); i += 8 {
		binary.LittleEndian.PutUint64(p.ZMM[i:], next())
	}
	for i := range p.Mask {
		p.Mask[i] = uint16(next()) | 1
	}
	return p
}

// Lost names the registers a round found changed: bit n of YMM is YMMn,
// bit n of ZMM is ZMM(16+n), bit n of K is K(n+1).
type Lost struct {
	YMM, ZMM uint16
	K        uint8
}

// Any reports whether a register lost its value.
func (l Lost) Any() bool { return l != Lost{} }

func (l Lost) String() string {
	return fmt.Sprintf("YMM0-15 %#04x, ZMM16-31 %#04x, K1-7 %#02x", l.YMM, l.ZMM, l.K)
}

// Round holds the pattern in YMM0-YMM15 for iters loop iterations and then,
// with AVX-512F, in ZMM16-ZMM31 and K1-K7 for as many. It must only be
// called when Supported.
func (p *Pattern) Round(iters uint64) Lost {
	l := Lost{YMM: uint16(ymmSpin(&p.YMM, iters))}
	if HasAVX512() {
		z := zmmSpin(&p.ZMM, &p.Mask, iters)
		l.ZMM, l.K = uint16(z), uint8(z>>16)
	}
	return l
}
