package selftest

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/doppel-ft/doppel/board"
)

const (
	churnChunk  = 4 << 20  // bytes per allocation
	churnWindow = 64 << 20 // most bytes kept alive at once
	pageSize    = 4096
)

// memSnapshot is the memory state at one point of the churn test.
type memSnapshot struct {
	runtime.MemStats
	free uint64 // the layer's MemFree (bare metal only)
}

// allocChurn allocates cfg.ChurnBytes in total (more than the machine's RAM
// on bare metal), touching every page, while keeping at most churnWindow
// alive; the runtime can only get through by collecting and reusing or
// returning memory. Afterwards runtime.GC and debug.FreeOSMemory must hand
// the heap back: HeapReleased grows by most of the window and, on bare
// metal, MemFree in /proc/meminfo first falls (the layer counts the frames
// the heap took) and then recovers (it took them back on madvise or munmap).
func allocChurn(ctx context.Context, cfg *Config) error {
	total := max(cfg.ChurnBytes, 2*churnChunk)
	window := min(uint64(churnWindow), total/2)
	slots := make([][]byte, max(1, window/churnChunk))

	before, err := snapshot(cfg, true)
	if err != nil {
		return err
	}
	if err := churn(ctx, total, slots); err != nil {
		return err
	}
	peak, err := snapshot(cfg, false)
	if err != nil {
		return err
	}
	clear(slots)
	after, err := snapshot(cfg, true)
	if err != nil {
		return err
	}
	logChurn(cfg, window, &before, &peak, &after)
	return checkReturned(cfg.BareMetal, total, window, &before, &peak, &after)
}

// churn allocates total bytes in chunks, writing every page, with the last
// len(slots) chunks alive; it checks that a live chunk keeps its contents.
func churn(ctx context.Context, total uint64, slots [][]byte) error {
	var done uint64
	for n := 0; done < total; n++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("after %s of %s: %w", board.FormatBytes(done), board.FormatBytes(total), err)
		}
		b := make([]byte, churnChunk)
		for i := 0; i < len(b); i += pageSize {
			b[i] = byte(n + i/pageSize)
		}
		oldN := n - len(slots)
		if old := slots[n%len(slots)]; old != nil {
			for _, page := range []int{0, 1, churnChunk/pageSize - 1} {
				if old[page*pageSize] != byte(oldN+page) {
					return fmt.Errorf("chunk %d page %d changed while alive", oldN, page)
				}
			}
		}
		slots[n%len(slots)] = b
		done += churnChunk
		if n%64 == 63 {
			runtime.GC()
		}
	}
	return nil
}

func checkReturned(bareMetal bool, total, window uint64, before, peak, after *memSnapshot) error {
	if got := after.TotalAlloc - before.TotalAlloc; got < total {
		return fmt.Errorf("runtime counted %s allocated, want at least %s", board.FormatBytes(got), board.FormatBytes(total))
	}
	if after.HeapInuse > before.HeapInuse+window/4 {
		return fmt.Errorf("heap in use grew from %s to %s after the churn was dropped",
			board.FormatBytes(before.HeapInuse), board.FormatBytes(after.HeapInuse))
	}
	// Every idle page goes back to the OS. Not "released grew by the
	// window": the churn may reuse pages released before it (a process
	// with earlier tests behind it had 46M released), and then the
	// released total hardly moves although everything was returned.
	if retained := after.HeapIdle - after.HeapReleased; retained > window/2 {
		return fmt.Errorf("FreeOSMemory kept %s of idle heap (idle %s, released %s), want at most %s",
			board.FormatBytes(retained), board.FormatBytes(after.HeapIdle), board.FormatBytes(after.HeapReleased), board.FormatBytes(window/2))
	}
	if !bareMetal {
		return nil
	}
	if peak.free+window/2 > before.free {
		return fmt.Errorf("MemFree hardly fell while %s was alive: %s before, %s at the peak",
			board.FormatBytes(window), board.FormatBytes(before.free), board.FormatBytes(peak.free))
	}
	if after.free+window/4 < before.free {
		return fmt.Errorf("MemFree did not recover: %s before, %s after",
			board.FormatBytes(before.free), board.FormatBytes(after.free))
	}
	return nil
}

func logChurn(cfg *Config, window uint64, before, peak, after *memSnapshot) {
	memFree := ""
	if cfg.BareMetal {
		memFree = fmt.Sprintf("; MemFree %s -> %s at the peak -> %s", board.FormatBytes(before.free),
			board.FormatBytes(peak.free), board.FormatBytes(after.free))
	}
	cfg.logf("alloc-churn: allocated %s (window %s); heap peak %s, released %s -> %s%s",
		board.FormatBytes(after.TotalAlloc-before.TotalAlloc), board.FormatBytes(window),
		board.FormatBytes(peak.HeapSys), board.FormatBytes(before.HeapReleased),
		board.FormatBytes(after.HeapReleased), memFree)
}

// snapshot reads the runtime's statistics and, on bare metal, the layer's
// MemFree; with settle it first collects everything and returns free memory
// to the OS.
func snapshot(cfg *Config, settle bool) (memSnapshot, error) {
	if settle {
		runtime.GC()
		debug.FreeOSMemory()
	}
	var s memSnapshot
	runtime.ReadMemStats(&s.MemStats)
	if !cfg.BareMetal {
		return s, nil // other processes make a host's MemFree meaningless
	}
	mi, err := board.ReadMeminfo()
	if err != nil {
		return s, err
	}
	s.free, err = mi.Get("MemFree")
	return s, err
}
