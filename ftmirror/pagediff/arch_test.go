package pagediff

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// Cross-checks every implementation archs() returns against the portable
// one, at every length up to maxCheckLen (straddling the 64, 128 and 512
// byte block cutoffs of every variant), with a difference at every word
// position, and at slice starts misaligned by 0-7 bytes.

const maxCheckLen = 3*512 + 64

// offsets are the (a, b) start misalignments tried for two-slice loops.
var offsets = func() [][2]int {
	var o [][2]int
	for i := range 8 {
		o = append(o, [2]int{i, i}, [2]int{i, (i + 3) % 8})
	}
	return o
}()

func forEachArch(t *testing.T, f func(t *testing.T, a arch)) {
	for _, a := range archs() {
		t.Run(a.name, func(t *testing.T) { f(t, a) })
	}
}

// lengths returns every multiple of 8 up to maxCheckLen.
func lengths() []int {
	var l []int
	for n := 0; n <= maxCheckLen; n += WordSize {
		l = append(l, n)
	}
	return l
}

func TestArchIsZero(t *testing.T) {
	buf := make([]byte, maxCheckLen+8)
	forEachArch(t, func(t *testing.T, a arch) {
		for _, n := range lengths() {
			for off := range 8 {
				p := buf[off : off+n]
				if !a.isZero(p) {
					t.Fatalf("len %d off %d: zero slice reported non-zero", n, off)
				}
				for i := range p {
					p[i] = 1 << (i % 8)
					if a.isZero(p) {
						t.Fatalf("len %d off %d: byte %d set, reported zero", n, off, i)
					}
					p[i] = 0
				}
				// Bytes just outside the slice must not count.
				buf[off+n] = 0xff
				if off > 0 {
					buf[off-1] = 0xff
				}
				if !a.isZero(p) {
					t.Fatalf("len %d off %d: read outside the slice", n, off)
				}
				clear(buf)
			}
		}
	})
}

// pair returns two slices of length n at the given misalignments, equal
// pseudo-random contents, inside buffers with canary bytes around them.
func pair(n int, off [2]int, seed uint64) (a, b, abuf, bbuf []byte) {
	src := page(seed)
	for len(src) < n+16 {
		src = append(src, page(seed+uint64(len(src)))...)
	}
	abuf = bytes.Clone(src[:n+16])
	bbuf = bytes.Clone(src[:n+16])
	a = abuf[off[0] : off[0]+n]
	b = bbuf[off[1] : off[1]+n]
	copy(b, a)
	return a, b, abuf, bbuf
}

func TestArchDiffMask(t *testing.T) {
	forEachArch(t, func(t *testing.T, ar arch) {
		for _, n := range lengths() {
			words := n / WordSize
			mw := (words + 63) / 64
			for _, off := range offsets {
				a, b, _, _ := pair(n, off, uint64(n))
				check := func(what string) {
					t.Helper()
					want := make([]uint64, mw+1)
					got := make([]uint64, mw+1)
					for i := range got {
						got[i] = 0xdead_beef_dead_beef
					}
					want[mw] = got[mw]
					portable.diffMask(a, b, want[:mw])
					ar.diffMask(a, b, got[:mw])
					if !slices.Equal(got, want) {
						t.Fatalf("len %d off %v %s: mask %x, want %x", n, off, what, got, want)
					}
				}
				check("equal")
				for w := range words {
					b[w*WordSize+w%8] ^= 0x80
					check(fmt.Sprintf("word %d differs", w))
					b[w*WordSize+w%8] ^= 0x80
				}
				for w := 0; w < words; w += 3 {
					b[w*WordSize+7] ^= 1
				}
				check("every third word differs")
			}
		}
	})
}

func TestArchApply(t *testing.T) {
	forEachArch(t, func(t *testing.T, ar arch) {
		for _, n := range lengths() {
			words := n / WordSize
			for _, off := range offsets {
				check := func(dst, src []byte, dbuf []byte, what string, wantN int) {
					t.Helper()
					want := bytes.Clone(dbuf)
					copy(want[off[0]:], src)
					if got := ar.apply(dst, src); got != wantN {
						t.Fatalf("len %d off %v %s: apply = %d, want %d", n, off, what, got, wantN)
					}
					if !bytes.Equal(dbuf, want) {
						t.Fatalf("len %d off %v %s: dst buffer wrong (or canary overwritten)", n, off, what)
					}
				}
				dst, src, dbuf, _ := pair(n, off, uint64(n)+7)
				check(dst, src, dbuf, "equal", 0)
				for w := range words {
					src[w*WordSize+w%8] ^= 0x80
					check(dst, src, dbuf, fmt.Sprintf("word %d differs", w), 1)
				}
				// dst == src now; flip every third word in src.
				k := 0
				for w := 0; w < words; w += 3 {
					src[w*WordSize] ^= 1
					k++
				}
				check(dst, src, dbuf, "every third word differs", k)
				for i := range src {
					src[i] ^= 0xff
				}
				check(dst, src, dbuf, "all words differ", words)
			}
		}
	})
}

// TestArchPublic runs the exported functions under every implementation.
func TestArchPublic(t *testing.T) {
	prev := page(3)
	cur := withWords(prev, 0, 1, 2, 63, 64, 100, 200, 201, 300, 511)
	saved := impl
	defer func() { impl = saved }()
	impl = portable
	wantDelta := AppendDelta(nil, prev, cur)
	forEachArch(t, func(t *testing.T, a arch) {
		impl = a
		if got := AppendDelta(nil, prev, cur); !bytes.Equal(got, wantDelta) {
			t.Errorf("AppendDelta differs from generic")
		}
		if got := DeltaSize(prev, cur); got != len(wantDelta) {
			t.Errorf("DeltaSize = %d, want %d", got, len(wantDelta))
		}
		if got := CountDiffWords(append(prev, prev...), append(cur, prev...)); got != 10 {
			t.Errorf("CountDiffWords over 2 pages = %d, want 10", got)
		}
	})
}

// TestImpl: the loops in use are the best this machine can run, and Impl
// names them.
func TestImpl(t *testing.T) {
	a := archs()
	if got, want := Impl(), a[len(a)-1].name; got != want {
		t.Errorf("Impl() = %q, want %q (the best of %d)", got, want, len(a))
	}
}
