package selftest

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/doppel-ft/doppel/cpu"
)

// calibrateTSC measures the TSC frequency in Hz by reading it and the Go
// clock across interval. The thread is locked so both reads of the TSC are
// usually on one CPU (the TSCs of one machine are synchronized anyway on any
// CPU with an invariant TSC).
func calibrateTSC(ctx context.Context, interval time.Duration) (float64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, t0 := cpu.RDTSC(), time.Now()
	select {
	case <-time.After(interval):
	case <-ctx.Done():
		return 0, fmt.Errorf("calibrating the TSC: %w", ctx.Err())
	}
	c1, t1 := cpu.RDTSC(), time.Now()
	if c1 <= c0 {
		return 0, fmt.Errorf("TSC went from %d to %d over %v", c0, c1, t1.Sub(t0))
	}
	hz := float64(c1-c0) / t1.Sub(t0).Seconds()
	// Bochs ticks the TSC once per emulated instruction (about 100 MHz, or
	// less); real CPUs run it at 1-6 GHz.
	if hz < 1e6 || hz > 1e11 {
		return 0, fmt.Errorf("implausible TSC frequency %.0f Hz", hz)
	}
	return hz, nil
}

// sleepTSC checks time.Sleep(50ms) by two clocks: Go's (clock_gettime in the
// layer) and the TSC calibrated against it. Sleep must never return early by
// either clock; returning late by more than the slack fails only if all of
// three tries do (a shared machine can delay one wake-up).
func sleepTSC(ctx context.Context, cfg *Config) error {
	const (
		want  = 50 * time.Millisecond
		tries = 3
	)
	slack := cfg.SleepSlack
	if slack <= 0 {
		slack = 25 * time.Millisecond
	}
	hz, err := calibrateTSC(ctx, 200*time.Millisecond)
	if err != nil {
		return err
	}
	cfg.logf("sleep-tsc: TSC runs at %.1f MHz (calibrated over 200ms)", hz/1e6)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var late []string
	for i := 0; i < tries; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		c0, t0 := cpu.RDTSC(), time.Now()
		time.Sleep(want)
		c1, wall := cpu.RDTSC(), time.Since(t0)
		tsc := time.Duration(float64(c1-c0) / hz * float64(time.Second))
		cfg.logf("sleep-tsc: Sleep(%v) took %v by the Go clock, %v by the TSC", want, wall, tsc)
		// The TSC measurement inherits the calibration's error: allow 2%.
		if wall < want || tsc < want*98/100 {
			return fmt.Errorf("Sleep(%v) returned early: %v by the Go clock, %v by the TSC", want, wall, tsc)
		}
		if diff := (wall - tsc).Abs(); diff > 2*time.Millisecond+wall/20 {
			return fmt.Errorf("clocks disagree over Sleep(%v): Go clock %v, TSC %v", want, wall, tsc)
		}
		if wall <= want+slack && tsc <= want+slack {
			return nil
		}
		late = append(late, fmt.Sprintf("%v/%v", wall, tsc))
	}
	return fmt.Errorf("Sleep(%v) took more than %v extra in all %d tries (Go clock/TSC: %v)", want, slack, tries, late)
}
