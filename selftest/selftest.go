// Package selftest checks, at boot, that the Go runtime really works on the
// machine under it: scheduling, memory returned to the boot layer, timers
// against the TSC, randomness and hashing, asynchronous preemption, faults
// turned into panics, threads spread over every CPU, and vector registers
// (AVX, AVX-512) kept across thread switches and signals. These are the
// promises boot/CONTRACT.md makes to the runtime; the same tests run on a
// Linux host, where they must pass too.
//
// Each test prints exactly one line, "selftest: PASS <name>" or
// "selftest: FAIL <name>: <why>", and the run ends with "selftest: ok N/N"
// or "selftest: failed K/N". Every test runs under a timeout, so a broken
// layer fails a test instead of hanging the run (a test that never returns
// is abandoned, its goroutine leaked).
package selftest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/doppel-ft/doppel/board"
)

// Config tunes the tests to the machine.
type Config struct {
	// ChurnBytes is how much the allocation churn test allocates in total.
	// The kernel asks for more than MemTotal on bare metal and caps it on a
	// host.
	ChurnBytes uint64
	// SleepSlack is how much later than asked time.Sleep may return.
	SleepSlack time.Duration
	// Timeout bounds each test.
	Timeout time.Duration
	// BareMetal enables the checks that need the boot layer's files.
	BareMetal bool
	// CPUs are the CPUs the layer lists (bare metal only), to check the
	// APIC ID each pinned thread sees.
	CPUs []board.CPU
	// Logf reports details (measurements); nil discards them.
	Logf func(format string, args ...any)
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// Test is one self-test. Run returns nil on success; it should return soon
// after ctx is done.
type Test struct {
	Name string
	Run  func(ctx context.Context, cfg *Config) error
}

// All is every self-test, in the order they run: the cheap ones first, the
// two that change GOMAXPROCS and the memory-hungry one last.
var All = []Test{
	{"layer-files", layerFiles},
	{"ping-pong", pingPong},
	{"crypto", cryptoKAT},
	{"nil-deref", nilDeref},
	{"sleep-tsc", sleepTSC},
	{"cpu-spread", cpuSpread},
	{"preempt-spin", preemptSpin},
	{"vector-state", vectorState},
	{"alloc-churn", allocChurn},
}

// Result is the outcome of a run.
type Result struct {
	Passed, Total int
	Failed        []string // names of the failed tests
}

// OK reports whether every test passed.
func (r Result) OK() bool { return r.Passed == r.Total }

// Run runs tests one after another, printing a line per test and a summary
// to w.
func Run(w io.Writer, cfg Config, tests []Test) Result {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 90 * time.Second
	}
	res := Result{Total: len(tests)}
	for _, t := range tests {
		if err := runOne(&cfg, t); err != nil {
			fmt.Fprintf(w, "selftest: FAIL %s: %v\n", t.Name, err)
			res.Failed = append(res.Failed, t.Name)
			continue
		}
		fmt.Fprintf(w, "selftest: PASS %s\n", t.Name)
		res.Passed++
	}
	if res.OK() {
		fmt.Fprintf(w, "selftest: ok %d/%d\n", res.Passed, res.Total)
	} else {
		fmt.Fprintf(w, "selftest: failed %d/%d\n", res.Total-res.Passed, res.Total)
	}
	return res
}

// errTimeout marks a test that did not finish in time.
var errTimeout = errors.New("timed out")

// runOne runs t under cfg.Timeout and turns a panic into a failure.
func runOne(cfg *Config, t Test) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("panic: %v", r)
			}
		}()
		done <- t.Run(ctx, cfg)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// Give the test a moment to return its own, more precise error.
		select {
		case err := <-done:
			return err
		case <-time.After(time.Second):
			return fmt.Errorf("%w after %v", errTimeout, cfg.Timeout)
		}
	}
}
