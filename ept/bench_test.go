package ept

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkHarvest measures one harvest of n dirty pages spread at random
// over a guest of 256 MiB or 1 GiB, by scan and by PML. The writes that set
// the flags are outside the timed part, but the PML drains at the PML-full
// exits they cause are part of the harvest's cost: ns/harvest counts them
// (ns/op does not). Reported: ns/harvest, ns per distinct dirty page, and
// the table entries read per harvest.
func BenchmarkHarvest(b *testing.B) {
	for _, ram := range []uint64{256 << 20, 1 << 30} {
		for _, n := range []int{1, 64, 4096, 32768} {
			for _, mode := range []string{"scan", "pml"} {
				name := fmt.Sprintf("ram=%dMiB/dirty=%d/%s", ram>>20, n, mode)
				b.Run(name, func(b *testing.B) { benchHarvest(b, ram, n, mode == "pml") })
			}
		}
	}
}

func benchHarvest(b *testing.B, ram uint64, n int, pml bool) {
	g := newTestGuest(b, ram, MapOpt{})
	frames := ram / PageSize
	cpu := &SimCPU{T: g.t, PML: pml, Index: PMLIndexStart}
	var spent time.Duration
	src := DirtySource(ScanSource{g.t})
	if pml {
		ps := NewPMLSource(g.t, &cpu.Log, cpu, frames)
		cpu.PMLFull = func() {
			t0 := time.Now()
			_, _ = ps.Drain()
			spent += time.Since(t0)
		}
		src = ps
	}
	rng := rand.New(rand.NewPCG(3, 4))
	gfns := make([]uint64, n)
	for i := range gfns {
		gfns[i] = rng.Uint64N(frames)
	}
	into := NewBitmap(frames)
	_ = src.Harvest(into) // start from clear flags
	var visited uint64
	spent = 0
	distinct := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		into.Reset()
		v0 := g.t.Visited()
		for _, gfn := range gfns {
			cpu.Access(gfn*PageSize, true)
		}
		b.StartTimer()
		t0 := time.Now()
		if err := src.Harvest(into); err != nil {
			b.Fatal(err)
		}
		spent += time.Since(t0)
		visited += g.t.Visited() - v0
		distinct = into.Count()
	}
	b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N), "ns/harvest")
	b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N)/float64(distinct), "ns/dirtypage")
	b.ReportMetric(float64(visited)/float64(b.N), "entries/op")
}

// BenchmarkHarvestAllTouched is the scan's worst case per GiB: every 2 MiB
// region touched (one dirty page in each), so no subtree is skipped.
func BenchmarkHarvestAllTouched(b *testing.B) {
	const ram = 1 << 30
	g := newTestGuest(b, ram, MapOpt{})
	cpu := NewSimCPU(g.t)
	into := NewBitmap(ram / PageSize)
	for b.Loop() {
		b.StopTimer()
		for gpa := uint64(0); gpa < ram; gpa += LargeSize {
			cpu.Access(gpa, true)
		}
		b.StartTimer()
		if err := g.t.HarvestScan(into); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/GiB")
}

// BenchmarkHarvestNPT is BenchmarkHarvest's scan for AMD-V nested page
// tables: the same walker with NPT's A (bit 5) and D (bit 6) flags.
func BenchmarkHarvestNPT(b *testing.B) {
	for _, ram := range []uint64{256 << 20, 1 << 30} {
		for _, n := range []int{1, 64, 4096, 32768} {
			b.Run(fmt.Sprintf("ram=%dMiB/dirty=%d/npt", ram>>20, n), func(b *testing.B) {
				benchScan(b, newNPTGuest(b, ram, MapOpt{}), ram, n)
			})
		}
	}
}

func benchScan(b *testing.B, g *testGuest, ram uint64, n int) {
	frames := ram / PageSize
	cpu := NewSimCPU(g.t)
	rng := rand.New(rand.NewPCG(3, 4))
	gfns := make([]uint64, n)
	for i := range gfns {
		gfns[i] = rng.Uint64N(frames)
	}
	into := NewBitmap(frames)
	_ = g.t.HarvestScan(into)
	var spent time.Duration
	var visited uint64
	distinct := 0
	for b.Loop() {
		b.StopTimer()
		into.Reset()
		v0 := g.t.Visited()
		for _, gfn := range gfns {
			cpu.Access(gfn*PageSize, true)
		}
		b.StartTimer()
		t0 := time.Now()
		if err := g.t.HarvestScan(into); err != nil {
			b.Fatal(err)
		}
		spent += time.Since(t0)
		visited += g.t.Visited() - v0
		distinct = into.Count()
	}
	b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N), "ns/harvest")
	b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N)/float64(distinct), "ns/dirtypage")
	b.ReportMetric(float64(visited)/float64(b.N), "entries/op")
}
