// Package simguest is a synthetic guest for tests and tools/ftsim: memory
// in 4 KiB pages, a dirty bitmap, a pause lock, and a stream of operations
// that each write a few words of one page and sometimes emit output. Every
// operation is a pure function of (seed, index), so memory and output after
// n operations can be recomputed independently (Replay, ExpectedOutput):
// that is how a failover is verified.
package simguest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/wire"
)

const PageSize = 4096

// Pattern is how operations pick pages.
type Pattern int

const (
	Uniform    Pattern = iota // any page
	HotSet                    // 90% of operations in the first 10% of pages
	Sequential                // page i mod pages
)

// ParsePattern parses "uniform", "hot" / "hotset", "sequential" / "seq".
func ParsePattern(s string) (Pattern, error) {
	switch s {
	case "uniform":
		return Uniform, nil
	case "hot", "hotset", "hot-set":
		return HotSet, nil
	case "sequential", "seq":
		return Sequential, nil
	}
	return 0, fmt.Errorf("simguest: unknown pattern %q", s)
}

// Params define the guest; both sides and the verifier must agree.
type Params struct {
	Pages     int
	Seed      uint64
	Pattern   Pattern
	Words     int     // 8-byte words written per operation (default 16)
	OutEvery  int     // one output record every OutEvery operations (default 4)
	ZeroEvery int     // every ZeroEvery-th page starts zero (0: none)
	Rate      float64 // operations (≈ dirtied pages) per second for Run
	// Compressible keeps only the low 16 bits of every word the guest
	// writes (small integers, as much of a real guest's memory holds), so
	// pages compress about 3:1; otherwise words are random and do not.
	Compressible bool
}

// word is what the guest stores for the random value x.
func (p *Params) word(x uint64) uint64 {
	if p.Compressible {
		return x & 0xffff
	}
	return x
}

func (p *Params) defaults() {
	if p.Words == 0 {
		p.Words = 16
	}
	if p.OutEvery == 0 {
		p.OutEvery = 4
	}
}

// Guest is the synthetic guest. It implements ftmirror.Memory,
// ftmirror.DirtySource and ftmirror.Guest.
type Guest struct {
	P    Params
	mem  []byte
	bits []uint64
	mu   sync.Mutex // held by each operation; Pause holds it
	ops  atomic.Uint64
	// Emit receives guest output (set before Run).
	Emit func([]byte)
}

// New returns a guest with its initial memory filled.
func New(p Params) *Guest {
	p.defaults()
	g := &Guest{P: p, mem: Alloc(p.Pages * PageSize), bits: make([]uint64, (p.Pages+63)/64)}
	Fill(g.mem, p)
	return g
}

// NewBlank returns a guest with zeroed memory (a secondary's).
func NewBlank(p Params) *Guest {
	p.defaults()
	return &Guest{P: p, mem: Alloc(p.Pages * PageSize), bits: make([]uint64, (p.Pages+63)/64)}
}

func mix(x uint64) uint64 { // splitmix64 finaliser
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Fill writes the initial memory for p.
func Fill(mem []byte, p Params) {
	for pfn := 0; pfn < p.Pages; pfn++ {
		pg := mem[pfn*PageSize : (pfn+1)*PageSize]
		if p.ZeroEvery > 0 && pfn%p.ZeroEvery == 0 {
			clear(pg)
			continue
		}
		x := mix(p.Seed ^ uint64(pfn)<<20)
		for w := 0; w < PageSize; w += 8 {
			x = x*6364136223846793005 + 1442695040888963407
			binary.LittleEndian.PutUint64(pg[w:], p.word(x)|1)
		}
	}
}

// op applies operation i to mem and returns the page it wrote.
func op(mem []byte, p *Params, i uint64) uint32 {
	r := mix(p.Seed ^ mix(i))
	var pfn uint64
	switch p.Pattern {
	case HotSet:
		hot := max(uint64(p.Pages)/10, 1)
		if r%10 != 0 {
			pfn = (r >> 8) % hot
		} else {
			pfn = (r >> 8) % uint64(p.Pages)
		}
	case Sequential:
		pfn = i % uint64(p.Pages)
	default:
		pfn = (r >> 8) % uint64(p.Pages)
	}
	words := PageSize / 8
	first := int(r>>40) % (words - p.Words + 1)
	pg := mem[int(pfn)*PageSize:]
	for w := 0; w < p.Words; w++ {
		r = mix(r)
		binary.LittleEndian.PutUint64(pg[(first+w)*8:], p.word(r))
	}
	return uint32(pfn)
}

// output returns the output of operation i, or nil.
func output(p *Params, i uint64) []byte {
	if i%uint64(p.OutEvery) != 0 {
		return nil
	}
	return fmt.Appendf(nil, "op %d %016x\n", i, mix(i^p.Seed))
}

// Step performs n operations now.
func (g *Guest) Step(n int) {
	for k := 0; k < n; k++ {
		g.mu.Lock()
		i := g.ops.Load()
		pfn := op(g.mem, &g.P, i)
		atomic.OrUint64(&g.bits[pfn/64], 1<<(pfn%64)) // after the data: see DirtySource
		g.ops.Store(i + 1)
		if out := output(&g.P, i); out != nil && g.Emit != nil {
			g.Emit(out)
		}
		g.mu.Unlock()
	}
}

// MaxLag bounds how far Run catches up with its rate. A guest that fell
// further behind (its thread was not scheduled, or Pause held it) skips the
// operations it missed beyond MaxLag, as a descheduled vCPU does not run
// later the instructions it missed. Without the bound a stall turned into a
// burst: after 100 ms without CPU at 50,000 operations/s the guest wrote
// 5,000 pages flat out, and the next checkpoint had to copy them all with
// the guest paused (tools/ftsim saw dirty sets of 7,000-42,000 pages and
// pauses of 400 ms on a loaded host).
const MaxLag = 10 * time.Millisecond

// owed returns how many operations to perform now and the new count of
// operations accounted for: due is how many the rate asks for since the
// start, done how many are accounted for; at most MaxLag's worth is owed.
func owed(due, done int, rate float64) (n, newDone int) {
	if lagMax := max(int(rate*MaxLag.Seconds()), 1); due-done > lagMax {
		done = due - lagMax // skipped, not made up
	}
	if due <= done {
		return 0, done
	}
	n = min(due-done, 64)
	return n, done + n
}

// Run performs operations at P.Rate per second until stop is closed,
// catching up at most MaxLag when it falls behind.
func (g *Guest) Run(stop <-chan struct{}) {
	start, done := time.Now(), 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		var n int
		if n, done = owed(int(time.Since(start).Seconds()*g.P.Rate), done, g.P.Rate); n > 0 {
			g.Step(n)
			continue
		}
		time.Sleep(time.Millisecond)
	}
}

// Ops is the number of operations performed.
func (g *Guest) Ops() uint64 { return g.ops.Load() }

func (g *Guest) NumPages() int          { return g.P.Pages }
func (g *Guest) Page(pfn uint32) []byte { return g.mem[int(pfn)*PageSize : int(pfn+1)*PageSize] }
func (g *Guest) Pause()                 { g.mu.Lock() }
func (g *Guest) Resume()                { g.mu.Unlock() }
func (g *Guest) Memory() []byte         { return g.mem }
func (g *Guest) Hash() [32]byte         { return sha256.Sum256(g.mem) }
func (g *Guest) SaveState(dst []wire.Blob) []wire.Blob {
	return append(dst, wire.Blob{ID: 1, Version: 1, Data: binary.LittleEndian.AppendUint64(nil, g.ops.Load())})
}

// Restore sets the operation count from a state saved by SaveState.
func (g *Guest) Restore(blobs []wire.Blob) error {
	for _, b := range blobs {
		if b.ID == 1 && b.Version == 1 && len(b.Data) == 8 {
			g.ops.Store(binary.LittleEndian.Uint64(b.Data))
			return nil
		}
	}
	return fmt.Errorf("simguest: no vCPU state blob in %d blobs", len(blobs))
}

// OpsIn returns the operation count recorded in a state.
func OpsIn(blobs []wire.Blob) (uint64, error) {
	var g Guest
	err := g.Restore(blobs)
	return g.ops.Load(), err
}

// Harvest implements ftmirror.DirtySource. It cannot fail: every CPU sees
// the bitmap.
func (g *Guest) Harvest(dst []uint32) ([]uint32, error) {
	for i := range g.bits {
		if atomic.LoadUint64(&g.bits[i]) == 0 {
			continue
		}
		v := atomic.SwapUint64(&g.bits[i], 0)
		for v != 0 {
			b := bits.TrailingZeros64(v)
			v &^= 1 << b
			dst = append(dst, uint32(i*64+b))
		}
	}
	return dst, nil
}

// Replay returns the memory after n operations from the initial fill.
func Replay(p Params, n uint64) []byte {
	p.defaults()
	mem := Alloc(p.Pages * PageSize)
	Fill(mem, p)
	for i := uint64(0); i < n; i++ {
		op(mem, &p, i)
	}
	return mem
}

// ExpectedOutput returns the output stream of the first n operations.
func ExpectedOutput(p Params, n uint64) []byte {
	p.defaults()
	var b []byte
	for i := uint64(0); i < n; i++ {
		b = append(b, output(&p, i)...)
	}
	return b
}

// ExpectedPrefix returns the output stream of as many operations as needed
// to cover length bytes (at least length bytes, or all it has after limit
// operations).
func ExpectedPrefix(p Params, length int, limit uint64) []byte {
	p.defaults()
	var b []byte
	for i := uint64(0); i < limit && len(b) < length; i++ {
		b = append(b, output(&p, i)...)
	}
	return b
}
