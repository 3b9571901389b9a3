package ept

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkDrainPML drains a full PML log of 512 random distinct pages of a
// 32 MiB or 256 MiB guest: the per-page cost of the drain at a PML-full
// exit. Under `perf stat -e instructions`, (instructions at -benchtime=Nx
// minus at 1x) / (N*512) is the instructions per logged page, the figure
// Bochs's TSC measures on the emulated CPU.
func BenchmarkDrainPML(b *testing.B) {
	for _, ram := range []uint64{32 << 20, 256 << 20} {
		b.Run(fmt.Sprintf("ram=%dMiB", ram>>20), func(b *testing.B) {
			g := newTestGuest(b, ram, MapOpt{})
			frames := ram / PageSize
			var log [PMLEntries]uint64
			rng := rand.New(rand.NewPCG(5, 6))
			for i, p := range rng.Perm(int(frames))[:PMLEntries] {
				log[i] = uint64(p)*PageSize | uint64(i)&0xFFF
			}
			into := NewBitmap(frames)
			for b.Loop() {
				if _, err := g.t.DrainPML(&log, 0xFFFF, into); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/PMLEntries, "ns/page")
		})
	}
}
