package vmguest

import (
	"bytes"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
)

// TestStateBlobs: SaveState's blobs decode to the Machine's state, and
// a damaged set of blobs is refused rather than half restored.
func TestStateBlobs(t *testing.T) {
	host := &fakeHost{base: 5000, t0: time.Now()}
	s, err := newSide(2, 16, fakeOpts{}, host, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.v.Out.SetEmit(func([]byte) {})
	if err := s.v.M.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	s.v.Pause()
	blobs := s.v.SaveState(nil)
	snap, err := s.v.M.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	st, err := DecodeState(blobs)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.CPUs) != 2 || !bytes.Equal(st.CPUs[1], snap.CPUs[1]) || !bytes.Equal(st.Devices["net0"], snap.Devices["net0"]) ||
		!bytes.Equal(st.Devices["uart0"], snap.Devices["uart0"]) {
		t.Fatal("decoded state differs from the machine's")
	}
	if st.GuestTSC < host.base || st.GuestTSC > s.v.GuestTSC() {
		t.Fatalf("guest TSC %d outside [%d, %d]", st.GuestTSC, host.base, s.v.GuestTSC())
	}
	s.v.Resume()
	s.v.M.Stop(nil)
	if err := s.v.M.Wait(); err != nil {
		t.Fatal(err)
	}

	clone := func() []ftmirror.Blob {
		c := append([]ftmirror.Blob(nil), blobs...)
		return c
	}
	bad := map[string][]ftmirror.Blob{}
	b := clone()
	b[0].Version = 2
	bad["version"] = b
	bad["missing vcpu"] = append(clone()[:1], clone()[2:]...)
	b = clone()
	b[2].ID = b[1].ID
	bad["duplicate"] = b
	bad["extra"] = append(clone(), ftmirror.Blob{ID: 0x999, Version: BlobVersion})
	b = clone()
	b[0].Data = b[0].Data[:len(b[0].Data)-1]
	bad["header truncated"] = b
	b = clone()
	b[0].Data = append([]byte{'X'}, b[0].Data[1:]...)
	bad["header magic"] = b
	bad["no header"] = clone()[1:]
	for name, bl := range bad {
		if _, err := DecodeState(bl); err == nil {
			t.Errorf("%s: accepted", name)
		}
		r, err := newSide(2, 16, fakeOpts{}, host, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.v.Restore(bl); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
	// A VM with other devices refuses the state.
	r, err := newSide(2, 16, fakeOpts{}, host, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.v.AddDevice("extra", r.b.nic); err != nil {
		t.Fatal(err)
	}
	if err := r.v.Restore(blobs); err == nil {
		t.Error("restore into a VM with an extra device succeeded")
	}
}
