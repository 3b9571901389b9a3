package pagediff

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// Benchmarks put each function beside copy() of the same PageSize bytes;
// all report throughput over one page (SetBytes(PageSize)). Compare with
//
//	go test ./ftmirror/pagediff -run '^$' -bench . -benchtime 200ms -count 8 | benchstat -col /impl -
//
// Two-page benchmarks alternate between pages A and B, which differ in the
// given fraction of words, so every Apply/ApplyDelta really writes them.

var fractions = []struct {
	name  string
	words int
}{{"0%", 0}, {"1%", 5}, {"10%", 51}, {"100%", pageWords}}

// pagesAB returns page A and page B differing from A in n words at
// pseudo-random distinct positions.
func pagesAB(n int) (a, b []byte) {
	a = page(42)
	pos := rand.New(rand.NewPCG(7, 7)).Perm(pageWords)[:n]
	return a, withWords(a, pos...)
}

// benchImpls runs f under the generic and each arch implementation, after
// a "copy" run that copies the page instead.
func benchImpls(b *testing.B, copyFn func(b *testing.B), f func(b *testing.B)) {
	b.Run("impl=copy", func(b *testing.B) {
		b.SetBytes(PageSize)
		copyFn(b)
	})
	saved := impl
	defer func() { impl = saved }()
	for _, a := range archs() {
		impl = a
		b.Run("impl="+a.name, func(b *testing.B) {
			b.SetBytes(PageSize)
			f(b)
		})
	}
}

var sink int

// copyAB copies A and B alternately into a destination page.
func copyAB(pa, pb []byte) func(b *testing.B) {
	return func(b *testing.B) {
		dst := bytes.Clone(pa)
		src := [2][]byte{pb, pa}
		for i := 0; b.Loop(); i++ {
			copy(dst, src[i&1])
		}
	}
}

func BenchmarkIsZero(b *testing.B) {
	zero := make([]byte, PageSize)
	last := make([]byte, PageSize)
	last[PageSize-1] = 1
	for _, tc := range []struct {
		name string
		p    []byte
	}{{"zero", zero}, {"lastword", last}} {
		b.Run("page="+tc.name, func(b *testing.B) {
			benchImpls(b, copyAB(zero, last), func(b *testing.B) {
				for b.Loop() {
					if IsZero(tc.p) {
						sink++
					}
				}
			})
		})
	}
}

func BenchmarkCountDiffWords(b *testing.B) {
	for _, fr := range fractions {
		pa, pb := pagesAB(fr.words)
		b.Run("changed="+fr.name, func(b *testing.B) {
			benchImpls(b, copyAB(pa, pb), func(b *testing.B) {
				for b.Loop() {
					sink += CountDiffWords(pa, pb)
				}
			})
		})
	}
}

func BenchmarkApply(b *testing.B) {
	for _, fr := range fractions {
		pa, pb := pagesAB(fr.words)
		b.Run("changed="+fr.name, func(b *testing.B) {
			benchImpls(b, copyAB(pa, pb), func(b *testing.B) {
				dst := bytes.Clone(pa)
				src := [2][]byte{pb, pa}
				for i := 0; b.Loop(); i++ {
					if Apply(dst, src[i&1]) != fr.words {
						b.Fatal("wrong count")
					}
				}
			})
		})
	}
}

func BenchmarkAppendDelta(b *testing.B) {
	for _, fr := range fractions {
		pa, pb := pagesAB(fr.words)
		b.Run("changed="+fr.name, func(b *testing.B) {
			benchImpls(b, copyAB(pa, pb), func(b *testing.B) {
				buf := make([]byte, 0, 2*PageSize)
				for b.Loop() {
					buf = AppendDelta(buf[:0], pa, pb)
				}
				sink += len(buf)
			})
		})
	}
}

func BenchmarkDeltaSize(b *testing.B) {
	for _, fr := range fractions {
		pa, pb := pagesAB(fr.words)
		b.Run("changed="+fr.name, func(b *testing.B) {
			benchImpls(b, copyAB(pa, pb), func(b *testing.B) {
				for b.Loop() {
					sink += DeltaSize(pa, pb)
				}
			})
		})
	}
}

func BenchmarkApplyDelta(b *testing.B) {
	for _, fr := range fractions {
		pa, pb := pagesAB(fr.words)
		d := [2][]byte{AppendDelta(nil, pa, pb), AppendDelta(nil, pb, pa)}
		b.Run(fmt.Sprintf("changed=%s", fr.name), func(b *testing.B) {
			benchImpls(b, copyAB(pa, pb), func(b *testing.B) {
				p := bytes.Clone(pa)
				for i := 0; b.Loop(); i++ {
					if err := ApplyDelta(p, d[i&1]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
