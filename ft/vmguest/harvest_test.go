package vmguest

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestHarvestReportsEveryWrite checks the DirtySource guarantee the engine
// relies on: copying only the pages each harvest reports, while the guest
// runs and then once paused, ends with an exact copy of memory.
func TestHarvestReportsEveryWrite(t *testing.T) {
	for _, pml := range []bool{false, true} {
		t.Run(map[bool]string{false: "dbit", true: "pml"}[pml], func(t *testing.T) {
			s, err := newSide(2, 64, fakeOpts{pml: pml}, &fakeHost{base: 1 << 40, t0: time.Now()}, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			s.v.Out.SetEmit(func([]byte) {})
			if err := s.v.M.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { s.v.M.Stop(nil); s.v.M.Wait() }()
			shadow := make([]byte, len(s.v.cfg.Memory))
			var dst []uint32
			// Start tracking: everything is dirty to begin with.
			s.v.Pause()
			if dst, err = s.v.Harvest(dst[:0]); err != nil {
				t.Fatal(err)
			}
			copy(shadow, s.v.cfg.Memory)
			s.v.Resume()
			reported := 0
			for round := 0; round < 30; round++ {
				time.Sleep(time.Millisecond)
				if round%7 == 3 {
					// A pause with no harvest (Primary.RunAlone): what
					// the vCPUs drained at it must still be reported.
					s.v.Pause()
					s.v.Resume()
				}
				if round%5 == 4 {
					s.v.Pause()
				}
				if dst, err = s.v.Harvest(dst[:0]); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				reported += len(dst)
				if round%5 != 4 {
					s.v.Pause()
				}
				for _, p := range dst {
					copy(shadow[int(p)*PageSize:], s.v.Page(p))
				}
				s.v.Resume()
			}
			s.v.Pause()
			if dst, err = s.v.Harvest(dst[:0]); err != nil {
				t.Fatal(err)
			}
			for _, p := range dst {
				copy(shadow[int(p)*PageSize:], s.v.Page(p))
			}
			if reported == 0 {
				t.Fatal("no page was ever reported dirty")
			}
			if !bytes.Equal(shadow, s.v.cfg.Memory) {
				n := 0
				for p := 0; p < s.v.NumPages(); p++ {
					if !bytes.Equal(shadow[p*PageSize:(p+1)*PageSize], s.v.Page(uint32(p))) {
						n++
					}
				}
				t.Fatalf("%d pages written but never reported", n)
			}
			s.v.Resume()
		})
	}
}

// TestHarvestUnanswered: a vCPU that does not reach an exit makes the
// harvest fail within the timeout, not return short; once it answers
// again, harvests succeed and nothing was lost.
func TestHarvestUnanswered(t *testing.T) {
	stuck := make(chan struct{})
	s, err := newSide(1, 16, fakeOpts{pml: true, stuck: stuck}, &fakeHost{t0: time.Now()}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	s.v.Out.SetEmit(func([]byte) {})
	if err := s.v.M.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the vCPU enter its stuck Step
	start := time.Now()
	_, err = s.v.Harvest(nil)
	if !errors.Is(err, ErrUnanswered) {
		t.Fatalf("harvest with a stuck vCPU: %v, want ErrUnanswered", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failed after %v", d)
	}
	close(stuck)
	deadline := time.Now().Add(5 * time.Second)
	for {
		dst, err := s.v.Harvest(nil)
		if err == nil && len(dst) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("harvest after unsticking: %v (%d pages)", err, len(dst))
		}
		time.Sleep(time.Millisecond)
	}
	s.v.M.Stop(nil)
	s.v.M.Wait()
	if _, err := s.v.Harvest(nil); !errors.Is(err, ErrUnanswered) {
		t.Fatalf("harvest of a stopped machine: %v", err)
	}
}

// TestHarvestKicksAgain: vCPUs that leave the guest only when kicked, and
// lose their first kicks, still answer a harvest and park for the pause
// well within the timeout: post and the Machine's Pause kick again.
func TestHarvestKicksAgain(t *testing.T) {
	s, err := newSide(2, 16, fakeOpts{pml: true, deaf: true, lose: 3}, &fakeHost{t0: time.Now()}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.v.Out.SetEmit(func([]byte) {})
	if err := s.v.M.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.v.M.Stop(nil)
		for {
			for _, c := range s.cpus {
				c.Kick() // until one gets through
			}
			select {
			case <-s.v.M.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	time.Sleep(20 * time.Millisecond) // let the vCPUs enter the guest
	for round := 0; round < 3; round++ {
		if _, err := s.v.Harvest(nil); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	for i, c := range s.cpus {
		if n := c.kicks.Load(); n <= 3 {
			t.Errorf("vcpu %d kicked %d times, want more than the 3 it lost", i, n)
		}
	}
}

// TestPauseFailureFailsHarvest: a pause that cannot capture state makes
// the next harvest fail, so the engine never sends a checkpoint without
// state.
func TestPauseFailureFailsHarvest(t *testing.T) {
	s, err := newSide(1, 16, fakeOpts{}, &fakeHost{t0: time.Now()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.v.Out.SetEmit(func([]byte) {})
	if err := s.v.M.Start(); err != nil {
		t.Fatal(err)
	}
	s.v.M.Stop(nil)
	s.v.M.Wait()
	s.v.Pause()
	if _, err := s.v.Harvest(nil); err == nil {
		t.Fatal("harvest after a failed pause succeeded")
	}
	if b := s.v.SaveState(nil); len(b) != 0 {
		t.Fatalf("SaveState after a failed pause gave %d blobs", len(b))
	}
	s.v.Resume()
}
