package irq

import (
	"errors"
	"testing"
	"time"
)

func TestChanCoalescesAndCloses(t *testing.T) {
	c := NewChan()
	c.Fire()
	c.Fire()
	c.Fire()
	if n, err := c.Wait(); n != 3 || err != nil {
		t.Fatalf("Wait = %d, %v; want 3 coalesced", n, err)
	}
	done := make(chan error)
	go func() {
		_, err := c.Wait()
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v", err)
	}
}

func TestPoll(t *testing.T) {
	p := NewPoll(time.Millisecond)
	if n, err := p.Wait(); n != 1 || err != nil {
		t.Fatalf("Wait = %d, %v", n, err)
	}
	p.Close()
	if _, err := p.Wait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v", err)
	}
}

func TestOpenOnHostFails(t *testing.T) {
	if _, err := Open(11); err == nil {
		t.Skip("/dev/irq exists: not a Linux host") // only under the boot layer
	}
	if _, err := OpenShared(11); err == nil {
		t.Error("OpenShared of a missing line succeeded")
	}
}

// TestFanWaitsForEveryDriver: the shared reader hands an interrupt to
// every subscriber and returns (so the line is read, and unmasked, again)
// only once each has come back to Wait or closed.
func TestFanWaitsForEveryDriver(t *testing.T) {
	mk := func() *subscriber {
		return &subscriber{fire: make(chan uint64, 1), ack: make(chan struct{}, 1), done: make(chan struct{})}
	}
	a, b, gone := mk(), mk(), mk()
	defer a.Close() // ends a's last Wait
	gone.Close()
	fanned := make(chan struct{})
	go func() {
		fan([]*subscriber{a, b, gone}, 3)
		close(fanned)
	}()
	for _, s := range []*subscriber{a, b} {
		if n, err := s.Wait(); n != 3 || err != nil {
			t.Fatalf("Wait = %d, %v", n, err)
		}
	}
	select {
	case <-fanned:
		t.Fatal("fan returned before the drivers acknowledged")
	case <-time.After(20 * time.Millisecond):
	}
	// a comes back to Wait (acknowledging) and blocks for the next one;
	// b closes instead.
	go a.Wait()
	b.Close()
	select {
	case <-fanned:
	case <-time.After(5 * time.Second):
		t.Fatal("fan still waiting after every driver acknowledged or closed")
	}
}
