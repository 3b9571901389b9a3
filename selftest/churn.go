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

// allocChurn allocates cfg.ChurnBytes in total (more than the machine's RAM
// on bare metal), touching every page, while keeping at most churnWindow
// alive; the runtime can only get through by collecting and reusing or
// returning memory. Afterwards runtime.GC and debug.FreeOSMemory must hand
// the heap back: HeapReleased grows by most of the window and, on bare
// metal, MemFree in /proc/meminfo recovers (the layer took the pages back
// on madvise(MADV_DONTNEED) or munmap).
func allocChurn(ctx context.Context, cfg *Config) error {
	total := cfg.ChurnBytes
	if total < 2*churnChunk {
		total = 2 * churnChunk
	}
	window := uint64(churnWindow)
	if window > total/2 {
		window = total / 2
	}
	slots := make([][]byte, max(1, window/churnChunk))

	before, freeBefore, err := settle(cfg)
	if err != nil {
		return err
	}
	var done uint64
	for n := 0; done < total; n++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("after %s of %s: %w", board.FormatBytes(done), board.FormatBytes(total), err)
		}
		b := make([]byte, churnChunk)
		for i := 0; i < len(b); i += pageSize {
			b[i] = byte(n + i)
		}
		if old := slots[n%len(slots)]; old != nil && old[pageSize] != byte(n-len(slots)+pageSize) {
			return fmt.Errorf("chunk %d was overwritten while alive", n-len(slots))
		}
		slots[n%len(slots)] = b
		done += churnChunk
		if n%64 == 63 {
			runtime.GC()
		}
	}
	var peak runtime.MemStats
	runtime.ReadMemStats(&peak)
	freePeak, err := memFree(cfg)
	if err != nil {
		return err
	}
	clear(slots)
	after, freeAfter, err := settle(cfg)
	if err != nil {
		return err
	}
	memFree := ""
	if cfg.BareMetal {
		memFree = fmt.Sprintf("; MemFree %s -> %s at the peak -> %s", board.FormatBytes(freeBefore),
			board.FormatBytes(freePeak), board.FormatBytes(freeAfter))
	}
	cfg.logf("alloc-churn: allocated %s (window %s); heap peak %s, released %s -> %s%s",
		board.FormatBytes(after.TotalAlloc-before.TotalAlloc), board.FormatBytes(window),
		board.FormatBytes(peak.HeapSys), board.FormatBytes(before.HeapReleased),
		board.FormatBytes(after.HeapReleased), memFree)
	if got := after.TotalAlloc - before.TotalAlloc; got < total {
		return fmt.Errorf("runtime counted %s allocated, want at least %s", board.FormatBytes(got), board.FormatBytes(total))
	}
	if after.HeapInuse > before.HeapInuse+window/4 {
		return fmt.Errorf("heap in use grew from %s to %s after the churn was dropped",
			board.FormatBytes(before.HeapInuse), board.FormatBytes(after.HeapInuse))
	}
	if after.HeapReleased < before.HeapReleased+window/2 {
		return fmt.Errorf("FreeOSMemory released %s -> %s, want at least %s more",
			board.FormatBytes(before.HeapReleased), board.FormatBytes(after.HeapReleased), board.FormatBytes(window/2))
	}
	// The layer must count the frames the heap took (MemFree falls while
	// the window is alive) and take them back (MemFree recovers).
	if cfg.BareMetal && freePeak+window/2 > freeBefore {
		return fmt.Errorf("MemFree hardly fell while %s was alive: %s before, %s at the peak",
			board.FormatBytes(window), board.FormatBytes(freeBefore), board.FormatBytes(freePeak))
	}
	if cfg.BareMetal && freeAfter+window/4 < freeBefore {
		return fmt.Errorf("MemFree did not recover: %s before, %s after", board.FormatBytes(freeBefore), board.FormatBytes(freeAfter))
	}
	return nil
}

// settle collects everything, returns free memory to the OS, and reports
// the runtime's statistics and (on bare metal) the layer's MemFree.
func settle(cfg *Config) (runtime.MemStats, uint64, error) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	free, err := memFree(cfg)
	return ms, free, err
}

// memFree returns the layer's MemFree on bare metal, 0 on a host (where
// other processes make it meaningless).
func memFree(cfg *Config) (uint64, error) {
	if !cfg.BareMetal {
		return 0, nil
	}
	mi, err := board.ReadMeminfo()
	if err != nil {
		return 0, err
	}
	return mi.Get("MemFree")
}
