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
		// Back to back: the slack lets one frame go early, no more.
		{"back to back", 1e6, 0, 0, 100, 98 * time.Millisecond, 98 * time.Millisecond},
		// Sleeps that overshoot by 0.3 ms lose no wire time: the frames
		// behind catch up within the slack.
		{"overshooting sleeps", 1e6, 300 * time.Microsecond, 0, 100, 98 * time.Millisecond, 99 * time.Millisecond},
		// An idle wire saves up no more than the slack: after 50 ms idle,
		// 100 frames still take 98 ms.
		{"after idle", 1e6, 0, 50 * time.Millisecond, 100, 98 * time.Millisecond, 98 * time.Millisecond},
		{"faster wire", 1e7, 0, 0, 100, 89 * time.Millisecond / 10, 90 * time.Millisecond / 10},
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
			if took < tc.minTook || took > tc.maxTook {
				t.Errorf("%d frames took %v, want %v to %v", tc.frames, took, tc.minTook, tc.maxTook)
			}
			if flushes != clk.slept {
				t.Errorf("%d sleeps but %d flushes: what waits in the buffer must go out before a sleep", clk.slept, flushes)
			}
		})
	}
}
