package qemutest

import (
	"testing"
	"time"
)

// fakeClock is a pacer's clock: sleeping moves it on by the time asked
// plus an overshoot, as a loaded host's sleeps do.
type fakeClock struct {
	t         time.Time
	overshoot time.Duration
	slept     int
}

func (c *fakeClock) now() time.Time { return c.t }
func (c *fakeClock) sleep(d time.Duration) {
	c.t = c.t.Add(d + c.overshoot)
	c.slept++
}

// TestPacer checks the relay's line rate on a fake clock: at 1 MB/s a
// 976-byte frame (1,000 bytes with the wire's overhead) takes 1 ms.
func TestPacer(t *testing.T) {
	const frame = 1000 - wireOverhead
	// paced is how long n back-to-back frames of the given wire time take,
	// first to last departure: the slack lets its worth go at once.
	paced := func(n int, each time.Duration) time.Duration {
		return time.Duration(n-1)*each - pacerBurst
	}
	tests := []struct {
		name      string
		rate      float64
		overshoot time.Duration
		idle      time.Duration // before the frames, after a first one
		frames    int
		// The time the frames took, first to last departure, is in
		// [minTook, maxTook].
		minTook, maxTook time.Duration
	}{
		{"unpaced", 0, 0, 0, 100, 0, 0},
		{"back to back", 1e6, 0, 0, 100, paced(100, time.Millisecond), paced(100, time.Millisecond)},
		// Sleeps that overshoot lose no wire time while the overshoot is
		// within the slack: the frames behind catch up.
		{"overshooting sleeps", 1e6, 300 * time.Microsecond, 0, 100, paced(100, time.Millisecond), paced(100, time.Millisecond) + time.Millisecond},
		{"millisecond sleeps", 1e6, 1500 * time.Microsecond, 0, 100, paced(100, time.Millisecond), paced(100, time.Millisecond) + 2*time.Millisecond},
		// An idle wire saves up no more than the slack.
		{"after idle", 1e6, 0, 50 * time.Millisecond, 100, paced(100, time.Millisecond), paced(100, time.Millisecond)},
		{"faster wire", 1e7, 0, 0, 1000, paced(1000, 100*time.Microsecond), paced(1000, 100*time.Microsecond)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1000, 0), overshoot: tc.overshoot}
			p := newPacer(tc.rate)
			p.now, p.sleep = clk.now, clk.sleep
			flushes := 0
			flush := func() error { flushes++; return nil }
			if tc.idle > 0 {
				p.wait(frame, flush)
				clk.t = clk.t.Add(tc.idle)
			}
			var first, last time.Time
			for i := range tc.frames {
				if err := p.wait(frame, flush); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = clk.t
				}
				last = clk.t
			}
			took := last.Sub(first)
			if tc.rate == 0 {
				tc.minTook, tc.maxTook = 0, 0
			}
			if took < tc.minTook || took > tc.maxTook {
				t.Errorf("%d frames took %v, want %v to %v", tc.frames, took, tc.minTook, tc.maxTook)
			}
			if flushes != clk.slept {
				t.Errorf("%d sleeps but %d flushes: what waits in the buffer must go out before a sleep", clk.slept, flushes)
			}
		})
	}
}
