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
