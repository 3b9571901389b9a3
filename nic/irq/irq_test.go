package irq

import (
	"encoding/binary"
	"errors"
	"syscall"
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

// TestFileWait: File reads the layer's 8-byte count with a blocking read
// (a pipe stands in for /dev/irq on the host), blocks until it comes, and
// reports a short read and Close.
func TestFileWait(t *testing.T) {
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	f := &File{n: 42, fd: p[0]}
	got := make(chan uint64, 1)
	go func() {
		n, err := f.Wait()
		if err != nil {
			t.Error(err)
		}
		got <- n
	}()
	select {
	case n := <-got:
		t.Fatalf("Wait returned %d before the line fired", n)
	case <-time.After(20 * time.Millisecond):
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], 5)
	syscall.Write(p[1], b[:])
	if n := <-got; n != 5 {
		t.Fatalf("Wait = %d, want 5", n)
	}
	syscall.Write(p[1], b[:3])
	if _, err := f.Wait(); err == nil {
		t.Error("a 3-byte read was accepted")
	}
	f.Close()
	syscall.Write(p[1], b[:])
	if _, err := f.Wait(); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close = %v, want ErrClosed", err)
	}
}
