package ept

import (
	"fmt"
	"math/bits"
)

// Bitmap is a set of guest frame numbers (guest-physical address >> 12),
// the dirty-page set a harvest fills.
type Bitmap struct {
	words  []uint64
	frames uint64
}

// NewBitmap returns an empty set for frames 0 to frames-1.
func NewBitmap(frames uint64) *Bitmap {
	return &Bitmap{words: make([]uint64, (frames+63)/64), frames: frames}
}

// Frames returns the number of frames the set can hold.
func (b *Bitmap) Frames() uint64 { return b.frames }

// Set adds frame gfn. It reports false, and adds nothing, for a frame out
// of range.
func (b *Bitmap) Set(gfn uint64) bool {
	if gfn >= b.frames {
		return false
	}
	b.words[gfn/64] |= 1 << (gfn % 64)
	return true
}

// SetRange adds frames [gfn, gfn+n), clipped to the set's range.
func (b *Bitmap) SetRange(gfn, n uint64) {
	for end := min(gfn+n, b.frames); gfn < end; gfn++ {
		if gfn%64 == 0 && end-gfn >= 64 {
			b.words[gfn/64] = ^uint64(0)
			gfn += 63
			continue
		}
		b.words[gfn/64] |= 1 << (gfn % 64)
	}
}

// Clear removes frame gfn.
func (b *Bitmap) Clear(gfn uint64) {
	if gfn < b.frames {
		b.words[gfn/64] &^= 1 << (gfn % 64)
	}
}

// Test reports whether frame gfn is in the set.
func (b *Bitmap) Test(gfn uint64) bool {
	return gfn < b.frames && b.words[gfn/64]&(1<<(gfn%64)) != 0
}

// Reset empties the set.
func (b *Bitmap) Reset() { clear(b.words) }

// Count returns the number of frames in the set.
func (b *Bitmap) Count() int {
	n := 0
	for _, w := range b.words {
		n += bits.OnesCount64(w)
	}
	return n
}

// ForEach calls f for each frame in the set, in increasing order, until f
// returns false.
func (b *Bitmap) ForEach(f func(gfn uint64) bool) {
	for i, w := range b.words {
		for w != 0 {
			gfn := uint64(i)*64 + uint64(bits.TrailingZeros64(w))
			if !f(gfn) {
				return
			}
			w &= w - 1
		}
	}
}

// Or adds every frame of o, which must have the same size.
func (b *Bitmap) Or(o *Bitmap) error {
	if o.frames != b.frames {
		return fmt.Errorf("ept: bitmap of %d frames or'ed into %d", o.frames, b.frames)
	}
	for i, w := range o.words {
		b.words[i] |= w
	}
	return nil
}

// AndNot returns a new set of the frames in b and not in o (same size).
func (b *Bitmap) AndNot(o *Bitmap) *Bitmap {
	r := NewBitmap(b.frames)
	for i := range r.words {
		if i < len(o.words) {
			r.words[i] = b.words[i] &^ o.words[i]
		} else {
			r.words[i] = b.words[i]
		}
	}
	return r
}

// Slice returns the frames in the set, in increasing order.
func (b *Bitmap) Slice() []uint64 {
	s := make([]uint64, 0, b.Count())
	b.ForEach(func(gfn uint64) bool { s = append(s, gfn); return true })
	return s
}
