package xstate

import (
	"testing"
	"time"
)

// TestRound: on this host the registers keep their values, so a round
// that reports lost registers under doppel means its state was not
// switched.
func TestRound(t *testing.T) {
	if !Supported() {
		t.Skip("host without AVX2 (or an OS that does not save it)")
	}
	for seed := uint64(1); seed <= 4; seed++ {
		if l := NewPattern(seed).Round(1000); l.Any() {
			t.Errorf("seed %d: %v lost their values", seed, l)
		}
	}
}

// TestPatternsDiffer: threads given different seeds hold different values,
// so one thread's registers restored into another would be seen.
func TestPatternsDiffer(t *testing.T) {
	a, b := NewPattern(1), NewPattern(2)
	if a.YMM == b.YMM || a.ZMM == b.ZMM || a.Mask == b.Mask {
		t.Error("two seeds gave a common part of the pattern")
	}
	for i, m := range a.Mask {
		if m == 0 {
			t.Errorf("K%d's pattern is 0, the register's reset value", i+1)
		}
	}
}

func TestLostString(t *testing.T) {
	tests := []struct {
		l    Lost
		any  bool
		want string
	}{
		{Lost{}, false, "YMM0-15 0x0000, ZMM16-31 0x0000, K1-7 0x00"},
		{Lost{YMM: 0x8001}, true, "YMM0-15 0x8001, ZMM16-31 0x0000, K1-7 0x00"},
		{Lost{K: 0x40}, true, "YMM0-15 0x0000, ZMM16-31 0x0000, K1-7 0x40"},
	}
	for _, tt := range tests {
		if got := tt.l.String(); got != tt.want || tt.l.Any() != tt.any {
			t.Errorf("%+v: String %q Any %v, want %q %v", tt.l, got, tt.l.Any(), tt.want, tt.any)
		}
	}
}

// TestRoundSeesChange: the check has teeth. The pattern's memory is
// changed while a round holds it in the registers, so the registers no
// longer equal it and the round must name exactly the changed ones.
func TestRoundSeesChange(t *testing.T) {
	if !Supported() {
		t.Skip("host without AVX2")
	}
	ymm := func(p *Pattern) Lost { return Lost{YMM: uint16(ymmSpin(&p.YMM, 1<<29))} }
	zmm := func(p *Pattern) Lost {
		z := zmmSpin(&p.ZMM, &p.Mask, 1<<29)
		return Lost{ZMM: uint16(z), K: uint8(z >> 16)}
	}
	tests := []struct {
		name   string
		round  func(p *Pattern) Lost
		change func(p *Pattern)
		want   Lost
	}{
		{"YMM5", ymm, func(p *Pattern) { p.YMM[5*32+31] ^= 1 }, Lost{YMM: 1 << 5}},
		{"YMM0 YMM15", ymm, func(p *Pattern) { p.YMM[0] ^= 0x80; p.YMM[15*32] ^= 1 }, Lost{YMM: 1 | 1<<15}},
		{"ZMM31", zmm, func(p *Pattern) { p.ZMM[15*64+63] ^= 1 }, Lost{ZMM: 1 << 15}},
		{"K7", zmm, func(p *Pattern) { p.Mask[6] ^= 0x100 }, Lost{K: 1 << 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want.YMM == 0 && !HasAVX512() {
				t.Skip("host without AVX-512F")
			}
			// The change must land after the round loaded the registers;
			// a round that lost the CPU before its loads gets more tries.
			var got Lost
			for try, delay := 0, 5*time.Millisecond; try < 5; try, delay = try+1, delay*2 {
				p := NewPattern(uint64(try) + 7)
				done := make(chan Lost)
				go func() { done <- tt.round(p) }()
				time.Sleep(delay)
				tt.change(p)
				if got = <-done; got == tt.want {
					return
				}
			}
			t.Errorf("round found %v lost, want %v", got, tt.want)
		})
	}
}
