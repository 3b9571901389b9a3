package linktest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/nic"
)

// TestPaceAfterIdle checks a paced wire that sat idle still keeps its
// pace: the time between the first and last frame of a burst is at least
// the burst's size over the rate (less the capped idle credit). Load can
// only make it slower, so the bound cannot fail on a busy machine.
func TestPaceAfterIdle(t *testing.T) {
	const rate = 20e6
	for _, idle := range []time.Duration{0, 300 * time.Millisecond} {
		a, b := Pair(Config{BytesPerSec: rate})
		time.Sleep(idle)
		frame := make([]byte, 1514)
		const n = 400
		go func() {
			for i := 0; i < n; {
				switch err := a.Transmit(frame); {
				case err == nil:
					i++
				case errors.Is(err, nic.ErrQueueFull):
					<-a.TxReady()
				default:
					t.Errorf("transmit: %v", err)
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var first time.Time
		for i := 0; i < n; i++ {
			if _, err := b.Receive(ctx); err != nil {
				t.Fatalf("idle %v: frame %d: %v", idle, i, err)
			}
			if i == 0 {
				first = time.Now()
			}
		}
		took := time.Since(first)
		cancel()
		a.Close()
		want := time.Duration(float64((n-1)*len(frame))/rate*1e9) - maxBurst
		if took < want {
			t.Errorf("idle %v: %d frames crossed in %v, want at least %v at %.0f MB/s", idle, n, took, want, rate/1e6)
		}
	}
}

// TestTransmitMore: frames sent with more reach the wire together with
// the burst's last frame, or with the first one refused, in order.
func TestTransmitMore(t *testing.T) {
	a, b := Pair(Config{Ring: 4})
	defer a.Close()
	frame := func(i int) []byte { f := make([]byte, 60); f[14] = byte(i); return f }
	for i := 0; i < 3; i++ {
		if err := a.TransmitMore(frame(i), true); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if f, err := b.Receive(ctx); err == nil {
		t.Fatalf("frame %d arrived before the burst's last frame", f[14])
	}
	cancel()
	if err := a.TransmitMore(frame(3), true); err != nil {
		t.Fatal(err)
	}
	// The ring's 4 slots are taken: the fifth is refused, and that sends
	// the four.
	if err := a.TransmitMore(frame(4), true); !errors.Is(err, nic.ErrQueueFull) {
		t.Fatalf("fifth frame on a 4-slot ring: %v", err)
	}
	for i := 0; i < 4; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		f, err := b.Receive(ctx)
		cancel()
		if err != nil || f[14] != byte(i) {
			t.Fatalf("frame %d: %v %v", i, f, err)
		}
	}
}
