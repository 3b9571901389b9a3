package selftest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/cpu/xstate"
)

// xstateRoundIters makes a round about a millisecond on hardware and tens
// of milliseconds in an emulator, so the layer's 4 ms slices and the
// runtime's preemption signals land inside rounds.
const xstateRoundIters = 1 << 22

// vectorState holds patterns in the vector registers (YMM0-15 and, with
// AVX-512F, ZMM16-31 and K1-7) on more threads than there are CPUs, all
// at once for a second, so the boot layer switches threads in the middle of
// rounds and the runtime signals the long-running ones: every round must
// find its registers as it left them. This is the promise the layer makes
// by turning on AVX in XCR0 (boot/layer/cpu.c). On bare metal the layer's
// counters must show the thread switches the rounds went through.
func vectorState(ctx context.Context, cfg *Config) error {
	if !xstate.Supported() {
		cfg.logf("vector-state: the OS gives no AVX2 state (XCR0 or CPUID): nothing to hold")
		return nil
	}
	threads := 2*runtime.NumCPU() + 2
	prev := runtime.GOMAXPROCS(threads)
	defer runtime.GOMAXPROCS(prev)
	before, err := layerCounters(cfg)
	if err != nil {
		return err
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		lost   []error
		rounds int
	)
	end := time.Now().Add(time.Second)
	for i := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			p := xstate.NewPattern(uint64(i+1) * 0x9E3779B97F4A7C15)
			n := 0
			for ; time.Now().Before(end) && ctx.Err() == nil; n++ {
				if l := p.Round(xstateRoundIters); l.Any() {
					mu.Lock()
					lost = append(lost, fmt.Errorf("thread %d round %d: %v lost their values", i, n, l))
					mu.Unlock()
					break
				}
			}
			mu.Lock()
			rounds += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(lost...); err != nil {
		return err
	}
	after, err := layerCounters(cfg)
	if err != nil {
		return err
	}
	switches, signals := after["context_switches"]-before["context_switches"], after["signals"]-before["signals"]
	regs := "YMM0-15"
	if xstate.HasAVX512() {
		regs += ", ZMM16-31, K1-7"
	}
	if !cfg.BareMetal {
		cfg.logf("vector-state: %d threads, %d rounds held %s", threads, rounds, regs)
		return nil
	}
	cfg.logf("vector-state: %d threads, %d rounds held %s; the layer switched threads %d times and sent %d signals meanwhile",
		threads, rounds, regs, switches, signals)
	if switches < uint64(threads) {
		return fmt.Errorf("the layer switched threads %d times during %d threads' rounds: too few to have tested its switch", switches, threads)
	}
	return nil
}

// layerCounters reads the boot layer's counters (bare metal only; nil on
// a host).
func layerCounters(cfg *Config) (map[string]uint64, error) {
	if !cfg.BareMetal {
		return nil, nil
	}
	return board.LayerStats()
}
