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
