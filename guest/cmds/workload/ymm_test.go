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
