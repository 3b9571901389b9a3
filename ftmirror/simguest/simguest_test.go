package simguest

import (
	"bytes"
	"testing"
)

// The verifier relies on this: n operations on a guest leave exactly the
// memory and output that Replay and ExpectedOutput recompute.
func TestReplayMatchesGuest(t *testing.T) {
	for _, pat := range []Pattern{Uniform, HotSet, Sequential} {
		p := Params{Pages: 64, Seed: 3, Pattern: pat, ZeroEvery: 7}
		g := New(p)
		var out []byte
		g.Emit = func(b []byte) { out = append(out, b...) }
		g.Step(1000)
		if !bytes.Equal(g.Memory(), Replay(p, 1000)) {
			t.Fatalf("pattern %d: memory differs from replay", pat)
		}
		if !bytes.Equal(out, ExpectedOutput(p, 1000)) {
			t.Fatalf("pattern %d: output differs", pat)
		}
		dirty, err := g.Harvest(nil)
		again, err2 := g.Harvest(nil)
		if err != nil || err2 != nil || len(dirty) == 0 || len(again) != 0 {
			t.Fatalf("pattern %d: harvest %d pages, then not cleared", pat, len(dirty))
		}
		blobs := g.SaveState(nil)
		if n, err := OpsIn(blobs); err != nil || n != 1000 {
			t.Fatalf("state says %d ops (%v)", n, err)
		}
	}
}

// TestOwedBoundsCatchUp checks Run's pacing: behind by less than MaxLag it
// catches up in steps of at most 64 operations; further behind, it skips
// the excess instead of writing it in one burst.
func TestOwedBoundsCatchUp(t *testing.T) {
	const rate = 50000 // MaxLag (10 ms) is 500 operations
	tests := []struct {
		name            string
		due, done       int
		wantN, wantDone int
	}{
		{"on time", 1000, 1000, 0, 1000},
		{"ahead", 1000, 1010, 0, 1010},
		{"a little behind", 1010, 1000, 10, 1010},
		{"behind, one step", 1400, 1000, 64, 1064},
		{"at the bound", 1500, 1000, 64, 1064},
		{"100 ms stall", 6000, 1000, 64, 5564},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, done := owed(tt.due, tt.done, rate)
			if n != tt.wantN || done != tt.wantDone {
				t.Errorf("owed(%d, %d) = %d, %d; want %d, %d", tt.due, tt.done, n, done, tt.wantN, tt.wantDone)
			}
		})
	}
	// Summed over a stall, the burst is MaxLag's worth, not the stall's.
	due, done, total := 6000, 1000, 0
	for {
		n, d := owed(due, done, rate)
		if n == 0 {
			break
		}
		total, done = total+n, d
	}
	if total != 500 {
		t.Errorf("after a 100 ms stall the guest wrote %d pages at once, want 500 (MaxLag)", total)
	}
}
