package main

import (
	"testing"

	"golang.org/x/sys/cpu"
)

// TestYMMSpin: the registers keep their values on this host, so a guest
// round that reports lost registers means its state was not switched.
func TestYMMSpin(t *testing.T) {
	if !cpu.X86.HasAVX2 {
		t.Skip("host without AVX2")
	}
	var p [16 * 32]byte
	for i := range p {
		p[i] = byte(i*7 + 1)
	}
	if lost := ymmSpin(&p, 1000); lost != 0 {
		t.Errorf("registers %#04x lost their values", lost)
	}
}

func TestZMMSpin(t *testing.T) {
	if !cpu.X86.HasAVX512F {
		t.Skip("host without AVX-512F")
	}
	var p [16 * 64]byte
	for i := range p {
		p[i] = byte(i*13 + 5)
	}
	m := [7]uint16{1, 0x8000, 0x1234, 0xFFFF, 0x00FF, 0xA5A5, 0x0F0F}
	if lost := zmmSpin(&p, &m, 1000); lost != 0 {
		t.Errorf("ZMM16-31 %#04x, K1-7 %#02x lost their values", lost&0xFFFF, lost>>16)
	}
}
