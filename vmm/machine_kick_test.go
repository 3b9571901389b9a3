package vmm

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// lossyCPU runs "in the guest" until a kick gets through; the first lose
// kicks are lost, as a real kick is when it lands just before the vCPU
// enters the guest.
type lossyCPU struct {
	lose    int32
	kicks   atomic.Int32
	kick    chan struct{}
	entered chan struct{} // gets a token at each Step
}

func (c *lossyCPU) Step() (Action, error) {
	select {
	case c.entered <- struct{}{}:
	default:
	}
	<-c.kick
	return ActionResume, nil
}

func (c *lossyCPU) Kick() {
	if c.kicks.Add(1) <= c.lose {
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *lossyCPU) Save() ([]byte, error)  { return []byte{1}, nil }
func (c *lossyCPU) Restore(b []byte) error { return errors.New("lossyCPU: no restore") }
func (c *lossyCPU) Close() error           { return nil }

// TestMachinePauseKicksAgain: Pause does not rely on one kick. Each vCPU
// loses its first kicks; Pause must kick again until every vCPU parks,
// and must not kick a vCPU that has parked.
func TestMachinePauseKicksAgain(t *testing.T) {
	for _, lose := range []int32{0, 1, 3} {
		cpus := []*lossyCPU{
			{lose: lose, kick: make(chan struct{}, 1), entered: make(chan struct{}, 1)},
			{lose: 0, kick: make(chan struct{}, 1), entered: make(chan struct{}, 1)},
		}
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
		for _, c := range cpus { // both in the guest before the Pause
			<-c.entered
		}
		done := make(chan error, 1)
		go func() { done <- m.Pause() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("lose %d: Pause: %v", lose, err)
			}
		case <-time.After(10 * time.Second):
			// Without the retry, Pause waits for ever on a lost kick.
			t.Fatalf("lose %d: Pause did not return; kicks sent %d, %d", lose, cpus[0].kicks.Load(), cpus[1].kicks.Load())
		}
		if got := cpus[0].kicks.Load(); got < lose+1 {
			t.Errorf("lose %d: vCPU 0 kicked %d times, want at least %d", lose, got, lose+1)
		}
		// Once paused, nobody is kicked: the retry ended with the Pause.
		k0, k1 := cpus[0].kicks.Load(), cpus[1].kicks.Load()
		time.Sleep(20 * kickRetry)
		if a, b := cpus[0].kicks.Load(), cpus[1].kicks.Load(); a != k0 || b != k1 {
			t.Errorf("lose %d: kicks went on after Pause returned: %d,%d then %d,%d", lose, k0, k1, a, b)
		}
		m.Stop(nil)
		for _, c := range cpus {
			c.Kick() // Stop kicked the running vCPUs; make sure none waits
		}
		if err := m.Wait(); err != nil {
			t.Fatalf("lose %d: Wait: %v", lose, err)
		}
	}
}
