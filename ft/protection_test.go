package ft

import (
	"bytes"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/ftmirror"
)

func TestProtectionHook(t *testing.T) {
	var out bytes.Buffer
	p := NewProtectionState(&out, Unprotected, "no secondary yet")
	steps := []struct {
		pt    ftmirror.Point
		e     uint64
		state Protection
	}{
		{ftmirror.PointSyncRound, 1, Syncing},
		{ftmirror.PointSyncRound, 2, Syncing},
		{ftmirror.PointBlackout, 3, Syncing},
		{ftmirror.PointPaused, 3, Syncing},
		{ftmirror.PointAcked, 3, Protected},
		{ftmirror.PointAcked, 4, Protected},
	}
	for _, s := range steps {
		p.Hook(s.pt, s.e)
		if got, _, _ := p.Get(); got != s.state {
			t.Fatalf("after %s %d: %s, want %s", s.pt, s.e, got, s.state)
		}
	}
	want := []string{
		"protection: unprotected (no secondary yet)",
		"protection: syncing (brownout round 1)",
		"protection: syncing (brownout round 2)",
		"protection: syncing (blackout, epoch 3)",
		"protection: protected (secondary acknowledged epoch 3)",
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("console:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}

func TestKill(t *testing.T) {
	type hit struct {
		pt ftmirror.Point
		e  uint64
	}
	cases := []struct {
		spec  string
		seq   []hit
		fires int // index in seq that fires, -1 none
	}{
		{"", []hit{{ftmirror.PointAcked, 5}}, -1},
		{"acked:3", []hit{{ftmirror.PointAcked, 2}, {ftmirror.PointAcked, 3}, {ftmirror.PointAcked, 4}}, 1},
		// Not before an epoch was acknowledged (the sync may still run).
		{"mid-epoch:2", []hit{{ftmirror.PointMidEpoch, 2}, {ftmirror.PointAcked, 2}, {ftmirror.PointMidEpoch, 3}}, 2},
		{"sync-round:1", []hit{{ftmirror.PointSyncRound, 1}}, 0},
		{"begin:9", []hit{{ftmirror.PointAcked, 1}, {ftmirror.PointBegin, 8}}, -1},
		// A resync (a promoted primary's new secondary) fires at once.
		{"resync", []hit{{ftmirror.PointResync, 40}}, 0},
	}
	for _, c := range cases {
		k, err := ParseKill(c.spec)
		if err != nil {
			t.Fatalf("%q: %v", c.spec, err)
		}
		got := -1
		for i, h := range c.seq {
			if k.Hit(h.pt, h.e) {
				if got >= 0 {
					t.Fatalf("%q fired twice", c.spec)
				}
				got = i
			}
		}
		if got != c.fires {
			t.Errorf("%q fired at step %d, want %d", c.spec, got, c.fires)
		}
	}
	// Held, a kill point lets its occurrences pass until armed.
	k, err := ParseKill("paused:1")
	if err != nil {
		t.Fatal(err)
	}
	k.Hold()
	for e := uint64(1); e <= 3; e++ {
		if k.Hit(ftmirror.PointAcked, e) || k.Hit(ftmirror.PointPaused, e) {
			t.Fatalf("held kill point fired at epoch %d", e)
		}
	}
	k.Arm()
	if !k.Hit(ftmirror.PointPaused, 4) {
		t.Error("armed kill point did not fire")
	}
	if _, err := ParseKill("nowhere:3"); err == nil {
		t.Error("an unknown point was accepted")
	}
}
