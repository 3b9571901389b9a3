package vmm

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// parkCPU runs (returns ActionResume every 50 µs) until told to halt with
// interrupts off; then its Step returns ActionPark at once (the HLT exit)
// and every later one after waiting for a kick or a wake-up. wake ends the halt like an INIT or NMI would;
// pending says such a wake-up is on its way but not yet seen.
type parkCPU struct {
	kick    chan struct{}
	haltOff atomic.Bool
	wake    chan struct{}
	pending atomic.Bool
	parks   atomic.Int64
	inHalt  bool // the HLT exit was reported
}

func newParkCPU() *parkCPU {
	return &parkCPU{kick: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
}

func (c *parkCPU) Step() (Action, error) {
	if !c.haltOff.Load() {
		c.inHalt = false
		select {
		case <-c.kick:
		case <-time.After(50 * time.Microsecond):
		}
		return ActionResume, nil
	}
	c.parks.Add(1)
	if !c.inHalt {
		c.inHalt = true
		return ActionPark, nil
	}
	select {
	case <-c.kick:
		return ActionPark, nil
	case <-c.wake:
		c.inHalt = false
		c.haltOff.Store(false)
		c.pending.Store(false)
		return ActionResume, nil
	}
}

func (c *parkCPU) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *parkCPU) WakePending() bool     { return c.pending.Load() }
func (c *parkCPU) Save() ([]byte, error) { return []byte{1}, nil }
func (c *parkCPU) Restore([]byte) error  { return nil }
func (c *parkCPU) Close() error          { return nil }

func newParkMachine(t *testing.T, cpus []*parkCPU) *Machine {
	t.Helper()
	m, err := NewMachine(MachineConfig{
		CPUs:   len(cpus),
		Memory: make(GuestMemory, 4096),
		NewCPU: func(i int) (CPU, error) { return cpus[i], nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(nil); m.Wait() })
	return m
}

// haltOff makes c halt with interrupts off and waits until it parked.
func haltOff(t *testing.T, c *parkCPU) {
	t.Helper()
	n := c.parks.Load()
	c.haltOff.Store(true)
	c.Kick()
	deadline := time.Now().Add(10 * time.Second)
	for c.parks.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatal("the vCPU never parked")
		}
		time.Sleep(time.Millisecond)
	}
}

// stillRunning fails if m stops within d.
func stillRunning(t *testing.T, m *Machine, d time.Duration, what string) {
	t.Helper()
	select {
	case <-m.Done():
		t.Fatalf("%s: the machine stopped: %v", what, m.Wait())
	case <-time.After(d):
	}
}

func TestMachineParkedVCPUKeepsOthersRunning(t *testing.T) {
	a, b := newParkCPU(), newParkCPU()
	m := newParkMachine(t, []*parkCPU{a, b})
	haltOff(t, a)
	stillRunning(t, m, 50*time.Millisecond, "one of two vCPUs parked")
	// Pause and resume work with a parked vCPU: it leaves its Step when
	// kicked and parks in the gate like any other.
	if err := m.Pause(); err != nil {
		t.Fatalf("pause with a parked vCPU: %v", err)
	}
	if _, err := m.SaveState(); err != nil {
		t.Fatalf("save with a parked vCPU: %v", err)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	stillRunning(t, m, 20*time.Millisecond, "resumed with one vCPU parked")
	// A wake-up (INIT, NMI) brings it back.
	a.wake <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for a.haltOff.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the parked vCPU did not wake")
		}
		time.Sleep(time.Millisecond)
	}
	stillRunning(t, m, 20*time.Millisecond, "after the wake-up")
}

func TestMachineStopsWhenAllVCPUsPark(t *testing.T) {
	for _, n := range []int{1, 2, 3} {
		cpus := make([]*parkCPU, n)
		for i := range cpus {
			cpus[i] = newParkCPU()
		}
		m := newParkMachine(t, cpus)
		for i, c := range cpus {
			haltOff(t, c)
			if i < n-1 {
				stillRunning(t, m, 10*time.Millisecond, "not all parked yet")
			}
		}
		select {
		case <-m.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%d vCPUs: all parked, the machine did not stop", n)
		}
		if err := m.Wait(); !errors.Is(err, ErrAllHalted) {
			t.Errorf("%d vCPUs: stop reason %v, want ErrAllHalted", n, err)
		}
	}
}

// A vCPU that halts right after sending a wake-up to another parked one
// must not stop the machine before the other sees it.
func TestMachineAllParkedWithWakePending(t *testing.T) {
	a, b := newParkCPU(), newParkCPU()
	m := newParkMachine(t, []*parkCPU{a, b})
	haltOff(t, a)
	a.pending.Store(true) // b sent a an INIT that a has not taken yet
	haltOff(t, b)
	stillRunning(t, m, 20*time.Millisecond, "all parked, one with a wake-up pending")
	a.wake <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for a.haltOff.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the parked vCPU did not wake")
		}
		time.Sleep(time.Millisecond)
	}
	stillRunning(t, m, 20*time.Millisecond, "after the wake-up")
}
