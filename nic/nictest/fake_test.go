package nictest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/nic"
)

func frame(n int, seq byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seq + byte(i)
	}
	return f
}

func TestPairCarriesFrames(t *testing.T) {
	a, b := Pair(Config{})
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 10; i++ {
		if err := nic.TransmitWait(ctx, a, frame(60+i, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		got, err := b.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := frame(60+i, byte(i)); !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if c := a.Counters(); c.TxFrames != 10 {
		t.Errorf("a TxFrames = %d, want 10", c.TxFrames)
	}
	if c := b.Counters(); c.RxFrames != 10 || c.RxBytes != 10*60+45 {
		t.Errorf("b counters %+v, want 10 frames, %d bytes", c, 10*60+45)
	}
}

func TestBadFrames(t *testing.T) {
	a, b := Pair(Config{Manual: true})
	defer a.Close()
	defer b.Close()
	tests := []struct {
		name string
		n    int
		want error
	}{
		{"runt", 13, nic.ErrFrameSize},
		{"header only", 14, nil},
		{"max", 1514, nil},
		{"giant", 1515, nic.ErrFrameSize},
	}
	for _, tc := range tests {
		if err := a.Transmit(make([]byte, tc.n)); !errors.Is(err, tc.want) {
			t.Errorf("%s: Transmit = %v, want %v", tc.name, err, tc.want)
		}
	}
	b.Inject(make([]byte, 10))
	b.Inject(make([]byte, 2000))
	b.Inject(make([]byte, 60))
	if c := b.Counters(); c.RxErrors != 2 || c.RxFrames != 1 {
		t.Errorf("after injecting runt, giant, good: %+v", c)
	}
}

func TestRingFullAndTxReady(t *testing.T) {
	a, b := Pair(Config{Manual: true, TxRing: 4, RxQueue: 2})
	defer a.Close()
	defer b.Close()
	for i := 0; i < 4; i++ {
		if err := a.Transmit(frame(64, byte(i))); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := a.Transmit(frame(64, 9)); !errors.Is(err, nic.ErrQueueFull) {
		t.Fatalf("5th frame into a 4-slot ring: %v, want ErrQueueFull", err)
	}
	select {
	case <-a.TxReady():
		t.Fatal("TxReady before any slot was freed")
	default:
	}
	if n := a.Deliver(10); n != 4 {
		t.Fatalf("Deliver moved %d, want 4", n)
	}
	select {
	case <-a.TxReady():
	case <-time.After(time.Second):
		t.Fatal("no TxReady after the ring drained")
	}
	// b's receive queue holds 2: the other two are dropped and counted.
	if c := b.Counters(); c.RxFrames != 2 || c.RxDropped != 2 {
		t.Errorf("b counters %+v, want 2 received, 2 dropped", c)
	}
	if c := a.Counters(); c.TxQueueFull != 1 || c.TxFrames != 4 {
		t.Errorf("a counters %+v, want 4 sent, 1 refused", c)
	}
}

func TestLinkDownAndClose(t *testing.T) {
	a, b := Pair(Config{})
	b.SetLink(false)
	if a.LinkUp() {
		t.Error("link up with the peer down")
	}
	if err := a.Transmit(frame(64, 0)); !errors.Is(err, nic.ErrLinkDown) {
		t.Errorf("Transmit with link down = %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := b.Receive(context.Background()); !errors.Is(err, nic.ErrClosed) {
			t.Errorf("Receive after Close = %v", err)
		}
	}()
	b.Close()
	wg.Wait()
	a.Close()
	if err := a.Transmit(frame(64, 0)); !errors.Is(err, nic.ErrClosed) {
		t.Errorf("Transmit after Close = %v", err)
	}
}

func TestConcurrentTransmitWait(t *testing.T) {
	a, b := Pair(Config{TxRing: 8, RxQueue: 4096})
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if err := nic.TransmitWait(ctx, a, frame(100, byte(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 2000; i++ {
		if _, err := b.Receive(ctx); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
}
