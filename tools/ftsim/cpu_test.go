package main

import (
	"testing"
	"time"
)

func TestCPUSamplerWindows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Every 100 ms: the machine busy 30 jiffies (0.3 s of a core at
	// USER_HZ 100 = 3 cores), 10 of them ours; the children waited 50 ms
	// on run queues (0.5 threads waiting on average).
	c := &cpuSampler{}
	for i := 0; i <= 10; i++ {
		c.samples = append(c.samples, cpuSample{at: at(100 * i), total: float64(30 * i), ours: float64(10 * i), wait: float64(50e6 * i)})
	}
	for _, tc := range []struct {
		name          string
		from, to      time.Time
		others, waits float64
	}{
		{"all", at(0), at(1000), 2, 0.5},
		{"inner", at(150), at(850), 2, 0.5},
		{"one sample", at(250), at(350), -1, -1},
		{"before the samples", at(-500), at(-100), -1, -1},
		{"after the samples", at(1100), at(1500), -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.others(tc.from, tc.to); got != tc.others {
				t.Errorf("others = %v, want %v", got, tc.others)
			}
			if got := c.waiting(tc.from, tc.to); got != tc.waits {
				t.Errorf("waiting = %v, want %v", got, tc.waits)
			}
		})
	}
}
