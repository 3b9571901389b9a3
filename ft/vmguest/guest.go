package vmguest

import (
	"fmt"
	"time"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
)

// Blob IDs and versions of the state a checkpoint carries: one header,
// then one blob per vCPU and one per device, each the vendor's or the
// device's own versioned encoding unchanged.
const (
	BlobHeader     = 1
	BlobCPUBase    = 0x100 // + vCPU index
	BlobDeviceBase = 0x200 // + device index, in AddDevice order
	BlobVersion    = 1

	headerMagic = "FTVM"
)

// Pause implements ftmirror.Guest: the NIC holds what arrives (F5), every
// vCPU drains its own dirty log at the exit where it parks, the Machine is
// paused at an instruction boundary (F3), and the vCPU and device state is
// captured at once, so a failure there is reported by the Harvest that
// follows (Guest.Pause cannot return an error; the engine harvests right
// after pausing and ends the session when the harvest fails).
func (v *VM) Pause() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused {
		return
	}
	for _, q := range v.quiesce {
		q.Quiesce(true)
	}
	v.paused = true
	v.pauseErr = nil
	v.snap = nil
	t0 := time.Now()
	r := &round{bm: ept.NewBitmap(uint64(v.NumPages()))}
	perr := v.post(r)
	t1 := time.Now()
	// The Machine leaves Running while the vCPUs are held at their exit,
	// so once released they park at the gate without entering the guest
	// again: what they drained is complete. The last to park starts the
	// state's save, which SaveState below collects.
	v.M.BeginPause(true)
	v.finish(r)
	err := v.M.Pause()
	t2 := time.Now()
	defer func() { v.stopParts.add(t1.Sub(t0), t2.Sub(t1), time.Since(t2)) }()
	if err != nil {
		v.pauseErr = fmt.Errorf("vmguest: pause: %w", err)
		return
	}
	if perr != nil {
		v.pauseErr = fmt.Errorf("vmguest: pause: %w", perr)
		return
	}
	v.pending.Or(r.bm)
	s, err := v.M.SaveState()
	if err != nil {
		v.pauseErr = fmt.Errorf("vmguest: save state: %w", err)
		return
	}
	v.snap, v.snapTSC = s, v.GuestTSC()
}

// Resume implements ftmirror.Guest.
func (v *VM) Resume() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.paused {
		return
	}
	v.paused = false
	v.snap = nil
	// A failed resume means the machine stopped; the engine learns it from
	// the next harvest (no vCPU answers).
	_ = v.M.Resume()
	for _, q := range v.quiesce {
		q.Quiesce(false)
	}
}

// SaveState implements ftmirror.Guest: the state captured by Pause, as a
// header blob (vCPU count, device names, guest TSC), one blob per vCPU
// and one per device. After a failed capture it appends nothing: the
// Harvest of this pause has already failed and the engine sends nothing.
func (v *VM) SaveState(dst []ftmirror.Blob) []ftmirror.Blob {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.snap == nil {
		return dst
	}
	e := devices.NewEncoder(headerMagic, BlobVersion)
	e.U32(uint32(len(v.snap.CPUs)))
	e.U32(uint32(len(v.devs)))
	for _, n := range v.devs {
		e.Bytes([]byte(n))
	}
	e.U64(v.snapTSC)
	dst = append(dst, ftmirror.Blob{ID: BlobHeader, Version: BlobVersion, Data: e.Finish()})
	for i, c := range v.snap.CPUs {
		dst = append(dst, ftmirror.Blob{ID: uint16(BlobCPUBase + i), Version: BlobVersion, Data: c})
	}
	for i, n := range v.devs {
		dst = append(dst, ftmirror.Blob{ID: uint16(BlobDeviceBase + i), Version: BlobVersion, Data: v.snap.Devices[n]})
	}
	return dst
}

// State is a checkpoint's state decoded from its blobs.
type State struct {
	CPUs     [][]byte
	Devices  map[string][]byte
	GuestTSC uint64
}

// DecodeState checks and decodes what SaveState wrote.
func DecodeState(blobs []ftmirror.Blob) (*State, error) {
	var hdr []byte
	byID := map[uint16][]byte{}
	for _, b := range blobs {
		if b.Version != BlobVersion {
			return nil, fmt.Errorf("vmguest: blob %#x version %d, want %d", b.ID, b.Version, BlobVersion)
		}
		if _, dup := byID[b.ID]; dup {
			return nil, fmt.Errorf("vmguest: blob %#x twice", b.ID)
		}
		byID[b.ID] = b.Data
		if b.ID == BlobHeader {
			hdr = b.Data
		}
	}
	if hdr == nil {
		return nil, fmt.Errorf("vmguest: state has no header blob")
	}
	d := devices.NewDecoder(hdr, headerMagic, BlobVersion)
	ncpu, ndev := d.U32(), d.U32()
	d.Check(ncpu >= 1 && ncpu <= 64, "%d vCPUs", ncpu)
	d.Check(ndev <= 1024, "%d devices", ndev)
	s := &State{Devices: map[string][]byte{}}
	var names []string
	for i := uint32(0); i < ndev && d.Err() == nil; i++ {
		names = append(names, string(d.Bytes(256)))
	}
	s.GuestTSC = d.U64()
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("vmguest: state header: %w", err)
	}
	if want := 1 + int(ncpu) + len(names); len(blobs) != want {
		return nil, fmt.Errorf("vmguest: state has %d blobs, header says %d", len(blobs), want)
	}
	for i := 0; i < int(ncpu); i++ {
		c, ok := byID[uint16(BlobCPUBase+i)]
		if !ok {
			return nil, fmt.Errorf("vmguest: state lacks vCPU %d", i)
		}
		s.CPUs = append(s.CPUs, c)
	}
	for i, n := range names {
		b, ok := byID[uint16(BlobDeviceBase+i)]
		if !ok {
			return nil, fmt.Errorf("vmguest: state lacks device %s", n)
		}
		if _, dup := s.Devices[n]; dup {
			return nil, fmt.Errorf("vmguest: device %s twice", n)
		}
		s.Devices[n] = b
	}
	return s, nil
}

// Restore loads a committed checkpoint into a VM that has not started and
// whose Memory already holds the checkpoint's memory (the secondary's
// mirrored RAM, on which the new VM is built). Devices must have been
// added in the primary's order. The guest TSC continues from the
// checkpoint: the offset becomes saved guest TSC minus this host's TSC
// now, so the restored guest reads at least the value it had at the
// checkpoint and it never goes backwards, whatever this host's TSC is.
// (The guest then lags real time by the failover time; its NTP catches up.
// Continuing from the primary's last reading, not from real time, is
// what "no jump backwards" needs: any later value the primary's guest read
// was never committed, since output that depended on it was not released.)
func (v *VM) Restore(blobs []ftmirror.Blob) error {
	s, err := DecodeState(blobs)
	if err != nil {
		return err
	}
	if len(s.Devices) != len(v.devs) {
		return fmt.Errorf("vmguest: restore: state has %d devices, VM %d", len(s.Devices), len(v.devs))
	}
	snap := &vmm.Snapshot{CPUs: s.CPUs, Devices: s.Devices, Memory: v.cfg.Memory}
	if err := v.M.Restore(snap); err != nil {
		return fmt.Errorf("vmguest: restore: %w", err)
	}
	v.setTSCOffset(int64(s.GuestTSC - v.cfg.HostTSC()))
	return nil
}
