package vmguest

import (
	"slices"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
)

// TestDMAIsDirty: writes by device models through DMA are reported by the
// next harvest, paused or running, and out-of-range DMA is refused. The
// real virtio-net device is built over it with the VM's Output as its
// backend, as a PC assembly would.
func TestDMAIsDirty(t *testing.T) {
	s, err := newSide(1, 32, fakeOpts{pml: true}, &fakeHost{t0: time.Now()}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := virtionet.New(s.v.DMA(), s.v.Out, virtionet.Options{}); err != nil {
		t.Fatal(err)
	}
	s.v.Out.SetEmit(func([]byte) {})
	if err := s.v.M.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { s.v.M.Stop(nil); s.v.M.Wait() }()
	s.v.Pause()
	if _, err := s.v.Harvest(nil); err != nil {
		t.Fatal(err)
	}
	// Two pages, written while the guest is paused.
	if err := s.v.DMA().WriteAt(make([]byte, 10), 7*PageSize-4); err != nil {
		t.Fatal(err)
	}
	got, err := s.v.Harvest(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, 6) || !slices.Contains(got, 7) {
		t.Fatalf("paused harvest %v lacks pages 6 and 7", got)
	}
	s.v.Resume()
	if err := s.v.DMA().WriteAt([]byte{1}, 31*PageSize); err != nil {
		t.Fatal(err)
	}
	if got, err = s.v.Harvest(nil); err != nil || !slices.Contains(got, 31) {
		t.Fatalf("running harvest %v (%v) lacks page 31", got, err)
	}
	if err := s.v.DMA().WriteAt(make([]byte, 2), 32*PageSize-1); err == nil {
		t.Fatal("DMA past the end of RAM accepted")
	}
	if err := s.v.DMA().ReadAt(make([]byte, 1), 1<<40); err == nil {
		t.Fatal("DMA read far outside RAM accepted")
	}
}
