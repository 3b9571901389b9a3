package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// fakeCPU is a guest that counts in its own word of guest memory. Each
// Step "runs" until kicked, as a halted vCPU sleeps until something wakes
// it: so Pause and Stop only work if the Machine kicks.
type fakeCPU struct {
	i       int
	mem     GuestMemory
	kick    chan struct{}
	stopAt  uint64 // the guest powers off when its count reaches this
	failAt  uint64 // Step fails at this count
	closed  *atomic.Int32
	counter uint64
	halt    bool // sleep until kicked, like a guest halted with no timer armed
	tid     int  // the thread it was built on: Save must run there too
	onSave  func(i int)
}

func (c *fakeCPU) Step() (Action, error) {
	for {
		c.counter++
		binary.LittleEndian.PutUint64(c.mem[8*c.i:], c.counter)
		if c.counter == c.stopAt {
			return ActionStop, nil
		}
		if c.counter == c.failAt {
			return ActionStop, fmt.Errorf("fake: unhandled exit at %d", c.counter)
		}
		select {
		case <-c.kick:
			return ActionResume, nil
		default:
		}
		if c.counter%64 == 0 {
			// Sleep like HLT until the next timer interrupt, or for
			// ever in halt mode: then only a kick ends it.
			var timer <-chan time.Time
			if !c.halt {
				timer = time.After(20 * time.Microsecond)
			}
			select {
			case <-c.kick:
			case <-timer:
			}
			return ActionResume, nil
		}
	}
}

func (c *fakeCPU) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *fakeCPU) Save() ([]byte, error) {
	if c.onSave != nil {
		c.onSave(c.i)
	}
	if c.tid != 0 && syscall.Gettid() != c.tid {
		return nil, fmt.Errorf("vcpu %d saved on thread %d, not its own %d", c.i, syscall.Gettid(), c.tid)
	}
	e := devices.NewEncoder("FCPU", 1)
	e.U64(c.counter)
	return e.Finish(), nil
}

func (c *fakeCPU) Restore(b []byte) error {
	d := devices.NewDecoder(b, "FCPU", 1)
	n := d.U64()
	if err := d.Finish(); err != nil {
		return err
	}
	c.counter = n
	return nil
}

func (c *fakeCPU) Close() error { c.closed.Add(1); return nil }

// fakeDevice is a register whose value is its state.
type fakeDevice struct{ v uint32 }

func (d *fakeDevice) Save() ([]byte, error) {
	e := devices.NewEncoder("FDEV", 1)
	e.U32(d.v)
	return e.Finish(), nil
}

func (d *fakeDevice) Restore(b []byte) error {
	dec := devices.NewDecoder(b, "FDEV", 1)
	v := dec.U32()
	if err := dec.Finish(); err != nil {
		return err
	}
	d.v = v
	return nil
}

type fakeOpts struct {
	stopAt, failAt uint64
	halt           bool
	onSave         func(vcpu int) // called at each vCPU's Save
}

func newFakeMachine(t *testing.T, n int, o fakeOpts) (*Machine, *atomic.Int32) {
	t.Helper()
	mem := make(GuestMemory, 4096)
	closed := new(atomic.Int32)
	pinned := make([]atomic.Bool, n)
	m, err := NewMachine(MachineConfig{
		CPUs:   n,
		Memory: mem,
		Pin: func(i int) error {
			runtime.LockOSThread() // as PinThread does
			pinned[i].Store(true)
			return nil
		},
		Unpin: func() error { runtime.UnlockOSThread(); return nil },
		NewCPU: func(i int) (CPU, error) {
			if !pinned[i].Load() {
				return nil, fmt.Errorf("vcpu %d built before its thread was pinned", i)
			}
			c := &fakeCPU{i: i, mem: mem, kick: make(chan struct{}, 1), closed: closed, halt: o.halt, tid: syscall.Gettid(), onSave: o.onSave}
			if i == 0 {
				c.stopAt, c.failAt = o.stopAt, o.failAt
			}
			return c, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, closed
}

func counters(m *Machine, n int) []uint64 {
	c := make([]uint64, n)
	for i := range c {
		c[i] = binary.LittleEndian.Uint64(m.Mem[8*i:])
	}
	return c
}

func TestMachinePauseResume(t *testing.T) {
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			m, closed := newFakeMachine(t, n, fakeOpts{})
			if err := m.Start(); err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 20; round++ {
				if err := m.Pause(); err != nil {
					t.Fatalf("round %d: pause: %v", round, err)
				}
				if s := m.State(); s != StatePaused {
					t.Fatalf("state after Pause = %v", s)
				}
				before := counters(m, n)
				time.Sleep(time.Millisecond)
				if after := counters(m, n); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Fatalf("round %d: guest ran while paused: %v -> %v", round, before, after)
				}
				if err := m.Resume(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Microsecond)
			}
			// Every vCPU runs after resume.
			time.Sleep(20 * time.Millisecond)
			if err := m.Pause(); err != nil {
				t.Fatal(err)
			}
			for i, c := range counters(m, n) {
				if c == 0 {
					t.Errorf("vcpu %d never ran", i)
				}
			}
			m.Resume()
			m.Stop(nil)
			if err := m.Wait(); err != nil {
				t.Fatalf("Wait = %v", err)
			}
			if got := closed.Load(); got != int32(n) {
				t.Errorf("%d vCPUs closed, want %d", got, n)
			}
			if err := m.Pause(); !errors.Is(err, ErrStopped) {
				t.Errorf("Pause after stop = %v, want ErrStopped", err)
			}
			if err := m.Resume(); !errors.Is(err, ErrStopped) {
				t.Errorf("Resume after stop = %v, want ErrStopped", err)
			}
		})
	}
}

// TestMachinePauseKicksHaltedVCPU: vCPUs that sleep until kicked still
// pause and stop, so Pause and Stop kick them.
func TestMachinePauseKicksHaltedVCPU(t *testing.T) {
	m, _ := newFakeMachine(t, 2, fakeOpts{halt: true})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- m.Pause() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pause did not return: halted vCPUs were not kicked")
	}
	m.Resume()
	m.Stop(nil)
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end halted vCPUs")
	}
}

func TestMachineStopWhilePaused(t *testing.T) {
	m, _ := newFakeMachine(t, 2, fakeOpts{})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	m.Stop(nil)
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("paused vCPUs did not end at Stop")
	}
	if s := m.State(); s != StateStopped {
		t.Errorf("state = %v", s)
	}
}

func TestMachineGuestStops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       fakeOpts
		wantErr bool
	}{
		{"poweroff", fakeOpts{stopAt: 1000}, false},
		{"error", fakeOpts{failAt: 1000}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newFakeMachine(t, 2, tc.o)
			if err := m.Start(); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case <-m.Done():
				err = m.Wait()
			case <-time.After(10 * time.Second):
				t.Fatal("machine did not stop")
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("Wait = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && !contains(err.Error(), "vcpu 0") {
				t.Errorf("error %q does not name the vCPU", err)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestMachineStartFailureStops(t *testing.T) {
	m, err := NewMachine(MachineConfig{
		CPUs:   2,
		Memory: make(GuestMemory, 4096),
		NewCPU: func(i int) (CPU, error) {
			if i == 1 {
				return nil, errors.New("no VMCS")
			}
			return &fakeCPU{i: i, mem: make(GuestMemory, 64), kick: make(chan struct{}, 1), closed: new(atomic.Int32)}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err == nil || !contains(err.Error(), "vcpu 1: no VMCS") {
		t.Fatalf("Start = %v", err)
	}
	if s := m.State(); s != StateStopped {
		t.Errorf("state = %v", s)
	}
}

// TestMachineSaveRestore saves a paused machine, builds a new one in fresh
// memory from the snapshot (through its encoding) and checks the guest
// continues where it was.
func TestMachineSaveRestore(t *testing.T) {
	const n = 2
	m, _ := newFakeMachine(t, n, fakeOpts{})
	dev := &fakeDevice{v: 0xC0FFEE}
	if err := m.AddDevice("reg", dev); err != nil {
		t.Fatal(err)
	}
	if err := m.AddDevice("reg", dev); err == nil {
		t.Error("a second device named reg was accepted")
	}
	if _, err := m.Save(); !errors.Is(err, ErrNotPaused) {
		t.Errorf("Save before start = %v, want ErrNotPaused", err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Save(); !errors.Is(err, ErrNotPaused) {
		t.Errorf("Save while running = %v, want ErrNotPaused", err)
	}
	for cycle := 0; cycle < 5; cycle++ {
		time.Sleep(time.Millisecond)
		if err := m.Pause(); err != nil {
			t.Fatal(err)
		}
		snap, err := m.Save()
		if err != nil {
			t.Fatal(err)
		}
		saved := counters(m, n)
		m.Stop(nil)
		if err := m.Wait(); err != nil {
			t.Fatal(err)
		}
		blob := snap.Encode()
		if len(blob) < snap.Size() {
			t.Errorf("encoding %d bytes, smaller than the snapshot's %d", len(blob), snap.Size())
		}
		back, err := DecodeSnapshot(blob)
		if err != nil {
			t.Fatal(err)
		}
		m, _ = newFakeMachine(t, n, fakeOpts{})
		dev = &fakeDevice{}
		m.AddDevice("reg", dev)
		if err := m.Restore(back); err != nil {
			t.Fatal(err)
		}
		if dev.v != 0xC0FFEE {
			t.Fatalf("device restored to %#x", dev.v)
		}
		if got := counters(m, n); fmt.Sprint(got) != fmt.Sprint(saved) {
			t.Fatalf("memory restored as %v, want %v", got, saved)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		// The restored vCPU counts on from its saved counter: it would
		// restart at 1 had its state not been restored. A loaded host may
		// not run a vCPU within a millisecond, so give it a few tries
		// (each read is made paused) before calling it stuck.
		for try := 0; ; try++ {
			time.Sleep(time.Millisecond)
			if err := m.Pause(); err != nil {
				t.Fatal(err)
			}
			got, behind := counters(m, n), -1
			for i, c := range got {
				if c < saved[i] {
					t.Fatalf("cycle %d: vcpu %d at %d after restore, saved %d", cycle, i, c, saved[i])
				}
				if c == saved[i] {
					behind = i
				}
			}
			if behind < 0 {
				break
			}
			if try == 1000 {
				t.Fatalf("cycle %d: vcpu %d did not run after restore (at its saved %d)", cycle, behind, saved[behind])
			}
			m.Resume()
		}
		m.Resume()
	}
	m.Stop(nil)
	m.Wait()
}

// TestMachinePauseAndSave: the vCPUs save themselves as the last of them
// parks (BeginPause's saveOnPark), never before every vCPU is parked (the
// snapshot must be a consistent cut), once per pause (SaveState collects
// that request instead of making another), and each saves the state it
// stopped in.
func TestMachinePauseAndSave(t *testing.T) {
	const n = 3
	var m *Machine
	var saves atomic.Int32
	var early atomic.Int32
	m, _ = newFakeMachine(t, n, fakeOpts{onSave: func(int) {
		saves.Add(1)
		m.mu.Lock()
		if m.parked != m.live {
			early.Add(1)
		}
		m.mu.Unlock()
	}})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(nil); m.Wait() }()
	for cycle := 1; cycle <= 20; cycle++ {
		time.Sleep(500 * time.Microsecond)
		snap, err := m.PauseAndSave()
		if err != nil {
			t.Fatal(err)
		}
		if got := saves.Load(); got != int32(n*cycle) {
			t.Fatalf("cycle %d: %d vCPU saves so far, want %d (one per vCPU per pause)", cycle, got, n*cycle)
		}
		want := counters(m, n)
		for i, b := range snap.CPUs {
			c := &fakeCPU{}
			if err := c.Restore(b); err != nil {
				t.Fatal(err)
			}
			if c.counter != want[i] {
				t.Fatalf("cycle %d: vcpu %d saved at count %d, stopped at %d", cycle, i, c.counter, want[i])
			}
		}
		// A second save of the same pause is a new request, not the
		// pause's again.
		if cycle%5 == 0 {
			if _, err := m.SaveState(); err != nil {
				t.Fatal(err)
			}
			if got := saves.Load(); got != int32(n*cycle+n) {
				t.Fatalf("cycle %d: a second SaveState made %d saves, want %d", cycle, got-int32(n*cycle), n)
			}
			saves.Add(-n)
		}
		if err := m.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	if e := early.Load(); e > 0 {
		t.Errorf("%d vCPU saves began before every vCPU was parked", e)
	}
}

// TestMachineSaveTo saves memory into a given buffer and restores from it
// in place, without copies of guest RAM on the heap.
func TestMachineSaveTo(t *testing.T) {
	m, _ := newFakeMachine(t, 1, fakeOpts{})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SaveTo(make(GuestMemory, 10)); err == nil {
		t.Error("SaveTo accepted memory of the wrong size")
	}
	fresh := make(GuestMemory, len(m.Mem))
	snap, err := m.SaveTo(fresh)
	if err != nil {
		t.Fatal(err)
	}
	saved := counters(m, 1)
	m.Stop(nil)
	m.Wait()
	back, err := DecodeSnapshot(snap.EncodeState())
	if err != nil || len(back.Memory) != 0 {
		t.Fatalf("state without memory: %v, %d memory bytes", err, len(back.Memory))
	}
	back.Memory = snap.Memory
	m2, err := NewMachine(MachineConfig{CPUs: 1, Memory: fresh, NewCPU: m.cfg.NewCPU})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Restore(back); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint64(fresh); got != saved[0] {
		t.Errorf("fresh memory holds %d, saved %d", got, saved[0])
	}
}

func TestMachineRestoreMismatch(t *testing.T) {
	good := func() *Snapshot {
		c := (&fakeCPU{}).mustSave()
		return &Snapshot{CPUs: [][]byte{c}, Devices: map[string][]byte{"reg": mustSave(&fakeDevice{v: 1})}, Memory: make([]byte, 4096)}
	}
	for _, tc := range []struct {
		name string
		edit func(s *Snapshot)
	}{
		{"cpus", func(s *Snapshot) { s.CPUs = append(s.CPUs, s.CPUs[0]) }},
		{"memory", func(s *Snapshot) { s.Memory = s.Memory[:100] }},
		{"device name", func(s *Snapshot) { s.Devices = map[string][]byte{"other": s.Devices["reg"]} }},
		{"device blob", func(s *Snapshot) { s.Devices["reg"] = s.CPUs[0] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newFakeMachine(t, 1, fakeOpts{})
			dev := &fakeDevice{v: 7}
			m.AddDevice("reg", dev)
			s := good()
			tc.edit(s)
			if err := m.Restore(s); err == nil {
				t.Fatal("Restore accepted a mismatched snapshot")
			}
			if dev.v != 7 {
				t.Errorf("device changed to %d by a refused restore", dev.v)
			}
		})
	}
}

func (c *fakeCPU) mustSave() []byte { b, _ := c.Save(); return b }

func mustSave(s devices.Snapshotter) []byte { b, _ := s.Save(); return b }

func TestDecodeSnapshotBad(t *testing.T) {
	s := &Snapshot{CPUs: [][]byte{{1, 2, 3}}, Devices: map[string][]byte{"a": {4}}, Memory: []byte{5, 6}}
	b := s.Encode()
	for i := 0; i < len(b); i++ {
		if _, err := DecodeSnapshot(b[:i]); !errors.Is(err, devices.ErrBadState) {
			t.Fatalf("truncated to %d: err = %v", i, err)
		}
	}
	if _, err := DecodeSnapshot(append(b, 0)); !errors.Is(err, devices.ErrBadState) {
		t.Errorf("trailing byte: err = %v", err)
	}
	back, err := DecodeSnapshot(b)
	if err != nil || fmt.Sprint(back) != fmt.Sprint(s) {
		t.Errorf("round trip = %v, %v", back, err)
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add((&Snapshot{CPUs: [][]byte{{1}}, Devices: map[string][]byte{"x": {2}}, Memory: []byte{3}}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSnapshot(b)
		if err != nil {
			if !errors.Is(err, devices.ErrBadState) {
				t.Fatalf("error %v does not wrap ErrBadState", err)
			}
			return
		}
		if _, err := DecodeSnapshot(s.Encode()); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
	})
}

type mmioRec struct {
	name string
	log  *[]string
}

func (d mmioRec) MMIORead(off uint64, data []byte) {
	*d.log = append(*d.log, fmt.Sprintf("%s r %#x %d", d.name, off, len(data)))
	data[0] = 0x5A
}
func (d mmioRec) MMIOWrite(off uint64, data []byte) {
	*d.log = append(*d.log, fmt.Sprintf("%s w %#x %x", d.name, off, data))
}

func TestMMIOBus(t *testing.T) {
	var log []string
	var b MMIOBus
	if err := b.Add("ioapic", 0xFEC0_0000, 0x1000, mmioRec{"ioapic", &log}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("lapic", 0xFEE0_0000, 0x1000, mmioRec{"lapic", &log}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		base, n uint64
	}{{0xFEC0_0FFF, 1}, {0xFEBF_F000, 0x1001}, {0xFEE0_0800, 0x10000}, {0, 0}, {^uint64(0), 2}} {
		if err := b.Add("x", bad.base, bad.n, mmioRec{"x", &log}); err == nil {
			t.Errorf("Add(%#x, %#x) accepted", bad.base, bad.n)
		}
	}
	if err := b.Add("between", 0xFEC0_1000, 0x1000, mmioRec{"between", &log}); err != nil {
		t.Errorf("adjacent range refused: %v", err)
	}
	var d [4]byte
	b.Read(0xFEE0_0030, d[:])
	b.Write(0xFEC0_0010, []byte{1, 2})
	b.Read(0xFEC0_1FFF, d[:1])
	b.Read(0xFED0_0000, d[:])
	want := []string{"lapic r 0x30 4", "ioapic w 0x10 0102", "between r 0xfff 1"}
	if fmt.Sprint(log) != fmt.Sprint(want) {
		t.Errorf("log = %q, want %q", log, want)
	}
	if d != [4]byte{0xFF, 0xFF, 0xFF, 0xFF} || b.Unclaimed != 1 {
		t.Errorf("unclaimed read = %x, Unclaimed = %d", d, b.Unclaimed)
	}
}
