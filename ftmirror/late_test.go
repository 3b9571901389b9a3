package ftmirror

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

// waitingAt reports whether someone waits on the clock for time at.
func (c *fakeClock) waitingAt(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.waiters {
		if w.at.Equal(at) {
			return true
		}
	}
	return false
}

// harvestLog records the size of every harvest and, at each pause, the
// size of the harvest the pause made (the last one before PointPaused).
type harvestLog struct {
	src    DirtySource
	mu     sync.Mutex
	last   int
	paused map[uint64]int
}

func (h *harvestLog) Harvest(dst []uint32) ([]uint32, error) {
	dst, err := h.src.Harvest(dst)
	h.mu.Lock()
	h.last = len(dst)
	h.mu.Unlock()
	return dst, err
}

func (h *harvestLog) pause(e uint64) {
	h.mu.Lock()
	h.paused[e] = h.last
	h.mu.Unlock()
}

func (h *harvestLog) pausedAt(e uint64) (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.paused[e]
	return n, ok
}

// TestLateCheckpointForwardsFirst drives the checkpoint loop on a fake
// clock. The guest writes many pages while the loop waits for the end of
// the epoch, and the loop then wakes an epoch late (as it does when its
// process is not scheduled). The checkpoint must first forward those pages
// while the guest runs, so its pause copies only what was written since;
// before, the pause copied them all (on a loaded host, pauses of 400 ms
// and dirty sets of 21,000 pages at 100 checkpoints a second).
func TestLateCheckpointForwardsFirst(t *testing.T) {
	clock := newFakeClock()
	params := simguest.Params{Pages: 4096, Seed: 3, Pattern: simguest.Uniform}
	pg, sg := simguest.New(params), simguest.NewBlank(params)
	hl := &harvestLog{src: pg, paused: map[uint64]int{}}
	cfg := Config{PSK: testPSK, Generation: 1, Epoch: 12 * time.Millisecond, GroupBytes: 64 << 10, Forward: true,
		Heartbeat: Heartbeat{Interval: 10 * time.Millisecond, Misses: 1000}, Clock: clock,
		Hook: func(pt Point, e uint64) {
			if pt == PointPaused {
				hl.pause(e)
			}
		}}
	p := NewPrimary(cfg, pg, hl, pg, worldSink{&world{}, "primary"})
	pg.Emit = p.Output
	scfg := cfg
	scfg.Hook = nil
	s := NewSecondary(scfg, sg)
	pc, sc := net.Pipe()
	defer pc.Close()
	defer sc.Close()
	go p.Serve(pc)
	go s.Serve(sc)

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	// The sync's blackout is epoch 1; the loop then starts at t0.
	waitFor("the sync", func() bool { _, ok := s.Committed(); return ok })
	t0, ep := clock.Now(), cfg.Epoch
	waitFor("the mid-epoch wait", func() bool { return clock.waitingAt(t0.Add(ep / 2)) })
	clock.Advance(ep / 2) // forward at half the epoch
	waitFor("the five-sixths wait", func() bool { return clock.waitingAt(t0.Add(ep - ep/6)) })
	clock.Advance(ep/2 - ep/6) // forward at five sixths
	waitFor("the wait for the checkpoint", func() bool { return clock.waitingAt(t0.Add(ep)) })
	pg.Step(2000)            // the guest keeps writing: about 1,600 distinct pages
	clock.Advance(ep/6 + ep) // the loop wakes an epoch late
	waitFor("checkpoint 2", func() bool { _, ok := hl.pausedAt(2); return ok })
	if n, _ := hl.pausedAt(2); n != 0 {
		t.Errorf("the late checkpoint's pause harvested %d pages; want 0 (forwarded first, while the guest ran)", n)
	}
	if got := p.Stats.Summary().LateCheckpoints; got != 1 {
		t.Errorf("LateCheckpoints = %d, want 1", got)
	}
	waitFor("epoch 2 committed", func() bool { c, _ := s.Committed(); return c >= 2 })
	if !bytes.Equal(sg.Memory(), pg.Memory()) { // the guest is idle: both hold epoch 2
		t.Error("secondary memory differs from the primary's after the late checkpoint")
	}
}

// TestSnapshotGrowsByChunks checks that growing the snapshot allocates only
// the missing chunks (the pages already held stay where they are) and that
// page slots neither overlap nor reach past their page.
func TestSnapshotGrowsByChunks(t *testing.T) {
	var allocs []int
	s := snapshot{alloc: func(n int) []byte { allocs = append(allocs, n); return make([]byte, n) }}
	if n := s.grow(10); n != 1 || s.capacity() != snapChunkPages {
		t.Fatalf("grow(10): %d chunks, capacity %d", n, s.capacity())
	}
	copy(s.page(7), "kept")
	if n := s.grow(3*snapChunkPages + 1); n != 3 || s.capacity() != 4*snapChunkPages {
		t.Fatalf("grow to %d pages: %d chunks, capacity %d", 3*snapChunkPages+1, n, s.capacity())
	}
	if n := s.grow(100); n != 0 {
		t.Fatalf("grow(100) on %d pages allocated %d chunks", s.capacity(), n)
	}
	if string(s.page(7)[:4]) != "kept" {
		t.Fatal("growing moved or cleared a page already held")
	}
	for _, n := range allocs {
		if n != snapChunkPages*PageSize {
			t.Fatalf("allocated %d bytes, want chunks of %d", n, snapChunkPages*PageSize)
		}
	}
	for i := 0; i < s.capacity(); i++ {
		pg := s.page(i)
		if len(pg) != PageSize || cap(pg) != PageSize {
			t.Fatalf("page %d: len %d cap %d", i, len(pg), cap(pg))
		}
		pg[0], pg[PageSize-1] = byte(i), byte(i>>8)
	}
	for i := 0; i < s.capacity(); i++ {
		if pg := s.page(i); pg[0] != byte(i) || pg[PageSize-1] != byte(i>>8) {
			t.Fatalf("page %d overlaps another", i)
		}
	}
}

// pagesMem is Memory over a byte slice.
type pagesMem []byte

func (m pagesMem) NumPages() int          { return len(m) / PageSize }
func (m pagesMem) Page(pfn uint32) []byte { return m[int(pfn)*PageSize : int(pfn+1)*PageSize] }

// TestUndoLogGrowsByChunks saves more pages than the undo log starts with:
// it must grow by whole chunks only (never reallocating what it holds) and
// still roll every page back.
func TestUndoLogGrowsByChunks(t *testing.T) {
	const pages = undoPages + snapChunkPages + 7
	mem := make(pagesMem, pages*PageSize)
	for i := range mem {
		mem[i] = byte(i*7 + i/PageSize)
	}
	before := bytes.Clone(mem)
	var allocs []int
	u := newUndoLog(func(n int) []byte { allocs = append(allocs, n); return make([]byte, n) })
	for pfn := uint32(0); pfn < pages; pfn++ {
		u.save(pfn, mem.Page(pfn))
		clear(mem.Page(pfn))
	}
	for _, n := range allocs {
		if n != snapChunkPages*PageSize {
			t.Fatalf("allocated %d bytes, want only chunks of %d", n, snapChunkPages*PageSize)
		}
	}
	if want := (pages + snapChunkPages - 1) / snapChunkPages; len(allocs) != want {
		t.Fatalf("%d chunks for %d pages, want %d", len(allocs), pages, want)
	}
	if n := u.rollback(mem); n != pages || !bytes.Equal(mem, before) {
		t.Fatalf("rollback restored %d of %d pages, memory equal: %v", n, pages, bytes.Equal(mem, before))
	}
	n := len(allocs)
	for pfn := uint32(0); pfn < pages; pfn++ { // the next epoch reuses the chunks
		u.save(pfn, mem.Page(pfn))
	}
	if len(allocs) != n {
		t.Fatalf("a second epoch of the same size allocated %d more chunks", len(allocs)-n)
	}
}
