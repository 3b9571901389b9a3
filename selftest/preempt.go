package selftest

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
)

// spin is a tight loop with no function calls and so no cooperative
// preemption point: only asynchronous preemption (SIGURG delivered to the
// thread) can take the CPU from it. It stops when stop is set or after limit
// iterations, so a machine without async preemption fails the test instead
// of hanging forever.
//
//go:noinline
func spin(stop *atomic.Bool, limit uint64) (n uint64) {
	for n = 0; n < limit && !stop.Load(); n++ {
	}
	return n
}

// spinRate measures how many spin iterations the CPU runs per second: the
// best of three probes, so a probe that lost the CPU to another thread does
// not make the spinner's bound too short.
func spinRate() float64 {
	var never atomic.Bool
	const probe = 10_000_000
	best := 0.0
	for i := 0; i < 3; i++ {
		start := time.Now()
		spin(&never, probe)
		best = max(best, probe/time.Since(start).Seconds())
	}
	return best
}

// preemptSpin runs, with GOMAXPROCS=1, a spinning goroutine beside a
// working one. The worker can only progress if the runtime preempts the
// spinner asynchronously (sysmon asks after 10ms; the layer must deliver the
// signal). Without that the spinner runs to its iteration limit (a few
// seconds) and the test fails.
func preemptSpin(ctx context.Context, cfg *Config) error {
	const (
		steps    = 10
		spinTime = 5 * time.Second // the spinner's own bound
	)
	limit := uint64(spinRate() * spinTime.Seconds())
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)

	var stop, spinning atomic.Bool
	spun := make(chan uint64, 1)
	start := time.Now()
	go func() {
		spinning.Store(true)
		spun <- spin(&stop, limit)
	}()
	for !spinning.Load() { // let the spinner take the only P
		runtime.Gosched()
	}
	var progress atomic.Int32
	worked := make(chan struct{})
	go func() {
		for i := 0; i < steps; i++ {
			time.Sleep(time.Millisecond)
			progress.Add(1)
		}
		close(worked)
	}()
	select {
	case <-worked:
		stop.Store(true)
		n := <-spun
		if n >= limit {
			return fmt.Errorf("the spinner reached its limit before it was stopped")
		}
		cfg.logf("preempt-spin: worker did %d steps in %v beside a spinning goroutine", steps, time.Since(start))
		return nil
	case <-spun:
		return fmt.Errorf("worker made %d/%d steps while a goroutine spun for %v: no asynchronous preemption",
			progress.Load(), steps, time.Since(start).Round(time.Millisecond))
	case <-ctx.Done():
		stop.Store(true)
		return fmt.Errorf("worker made %d/%d steps: %w", progress.Load(), steps, ctx.Err())
	}
}
