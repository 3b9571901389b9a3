package pagediff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// PageSize is the size of a guest page in bytes.
const PageSize = 4096

// WordSize is the unit of comparison and apply, in bytes.
const WordSize = 8

// pageWords is the number of words in a page.
const pageWords = PageSize / WordSize

// maskWords is the number of uint64 bitmap words covering one page.
const maskWords = pageWords / 64

// runHeader is the size of a run header in a delta: u16 first, u16 count.
const runHeader = 4

// ErrMalformed is wrapped by every error ApplyDelta returns for a bad delta.
var ErrMalformed = errors.New("pagediff: malformed delta")

// IsZero reports whether p (len a multiple of 8) is all zero bytes.
// Any trailing bytes past the last whole word are checked too.
func IsZero(p []byte) bool {
	n := len(p) &^ (WordSize - 1)
	for _, c := range p[n:] {
		if c != 0 {
			return false
		}
	}
	return impl.isZero(p[:n])
}

// CountDiffWords returns how many aligned 8-byte words differ between a and
// b (equal lengths, multiple of 8). It panics if the lengths are not.
func CountDiffWords(a, b []byte) int {
	checkPair("CountDiffWords", a, b)
	var mask [maskWords]uint64
	n := 0
	for len(a) > 0 {
		c := min(len(a), PageSize)
		impl.diffMask(a[:c], b[:c], mask[:])
		for _, m := range mask[:(c/WordSize+63)/64] {
			n += bits.OnesCount64(m)
		}
		a, b = a[c:], b[c:]
	}
	return n
}

// Apply writes into dst only the 8-byte words of src that differ from dst
// and returns how many it wrote (patent US11288123: apply by swapping only
// the differing words). dst and src must have equal lengths, a multiple of
// 8; Apply panics otherwise.
func Apply(dst, src []byte) int {
	checkPair("Apply", dst, src)
	return impl.apply(dst, src)
}

// AppendDelta appends to buf an encoding of cur relative to prev (both
// PageSize) and returns it: runs of changed words as [u16 first word
// index][u16 word count][count*8 bytes], little-endian, terminated by
// nothing (the length is framed by the caller). An unchanged page encodes to
// zero bytes. See the package doc for the format and the run rules.
func AppendDelta(buf, prev, cur []byte) []byte {
	var mask [maskWords]uint64
	pageMask("AppendDelta", prev, cur, &mask)
	return appendMasked(buf, cur, &mask)
}

// appendMasked appends the runs of cur's words selected by mask.
func appendMasked(buf, cur []byte, mask *[maskWords]uint64) []byte {
	size := maskDeltaSize(mask)
	buf = slices.Grow(buf, size)
	out := buf[len(buf) : len(buf)+size]
	off := 0
	for i := nextSet(mask, 0); i < pageWords; {
		end := nextClear(mask, i)
		le.PutUint16(out[off:], uint16(i))
		le.PutUint16(out[off+2:], uint16(end-i))
		off += runHeader
		if end-i == 1 { // the common isolated word: no memmove call
			le.PutUint64(out[off:], le.Uint64(cur[i*WordSize:]))
		} else {
			copy(out[off:], cur[i*WordSize:end*WordSize])
		}
		off += (end - i) * WordSize
		i = nextSet(mask, end)
	}
	return buf[:len(buf)+size]
}

// A Differ sizes and encodes page deltas without allocating, and without
// diffing a page twice: Size keeps the diff bitmap, and Append encodes
// from it. (DeltaSize and AppendDelta each diff the pair again, and their
// bitmap goes to the heap, since the implementation is called through a
// function value: two allocations per page, 900 per checkpoint in
// ftmirror's pipeline benchmark.) A Differ is not safe for concurrent use.
type Differ struct {
	mask [maskWords]uint64
	cur  *byte // the page the mask was computed for, to catch misuse
}

// Size returns len(AppendDelta(nil, prev, cur)) and keeps the diff for
// Append. It panics if a page is not PageSize bytes.
func (d *Differ) Size(prev, cur []byte) int {
	pageMask("Differ.Size", prev, cur, &d.mask)
	d.cur = &cur[0]
	return maskDeltaSize(&d.mask)
}

// Append appends the encoding AppendDelta(buf, prev, cur) would append,
// for the pair of the last Size call; cur must be that call's page, and
// neither page may have changed since. It panics if cur is another page.
func (d *Differ) Append(buf, cur []byte) []byte {
	if len(cur) != PageSize || d.cur != &cur[0] {
		panic("pagediff: Differ.Append without Size of the same page")
	}
	return appendMasked(buf, cur, &d.mask)
}

// DeltaSize returns len(AppendDelta(nil, prev, cur)) without building it
// (for deciding delta vs full page).
func DeltaSize(prev, cur []byte) int {
	var mask [maskWords]uint64
	pageMask("DeltaSize", prev, cur, &mask)
	return maskDeltaSize(&mask)
}

// maskDeltaSize returns the encoded size of the runs in a page's diff
// bitmap: a header per run start plus a word per set bit.
func maskDeltaSize(mask *[maskWords]uint64) int {
	size := 0
	carry := uint64(0) // bit 0: last word of the previous bitmap word changed
	for _, m := range mask {
		starts := m &^ (m<<1 | carry)
		size += runHeader*bits.OnesCount64(starts) + WordSize*bits.OnesCount64(m)
		carry = m >> 63
	}
	return size
}

// ApplyDelta applies an encoding produced by AppendDelta to page
// (PageSize). It validates first and returns an error (wrapping
// ErrMalformed) on any run out of bounds, overlapping/unsorted, zero count
// or truncated input, leaving page untouched in that case.
func ApplyDelta(page, delta []byte) error {
	if len(page) != PageSize {
		panic(fmt.Sprintf("pagediff.ApplyDelta: page is %d bytes, want %d", len(page), PageSize))
	}
	if err := validate(delta); err != nil {
		return err
	}
	for len(delta) > 0 {
		first := int(binary.LittleEndian.Uint16(delta))
		n := int(binary.LittleEndian.Uint16(delta[2:])) * WordSize
		if n == WordSize { // the common isolated word: no memmove call
			le.PutUint64(page[first*WordSize:], le.Uint64(delta[runHeader:]))
		} else {
			copy(page[first*WordSize:], delta[runHeader:runHeader+n])
		}
		delta = delta[runHeader+n:]
	}
	return nil
}

// validate checks every run of delta without touching any page.
func validate(delta []byte) error {
	prevEnd, off := 0, 0
	for off < len(delta) {
		if len(delta)-off < runHeader {
			return fmt.Errorf("%w: truncated run header at byte %d", ErrMalformed, off)
		}
		first := int(binary.LittleEndian.Uint16(delta[off:]))
		count := int(binary.LittleEndian.Uint16(delta[off+2:]))
		switch {
		case count == 0:
			return fmt.Errorf("%w: zero word count at byte %d", ErrMalformed, off)
		case first < prevEnd:
			return fmt.Errorf("%w: run at word %d overlaps or precedes word %d (byte %d)", ErrMalformed, first, prevEnd, off)
		case first+count > pageWords:
			return fmt.Errorf("%w: run %d+%d past word %d (byte %d)", ErrMalformed, first, count, pageWords, off)
		case len(delta)-off-runHeader < count*WordSize:
			return fmt.Errorf("%w: run at byte %d needs %d bytes, %d left", ErrMalformed, off, count*WordSize, len(delta)-off-runHeader)
		}
		prevEnd = first + count
		off += runHeader + count*WordSize
	}
	return nil
}

// pageMask fills mask with the words that differ between two pages.
func pageMask(fn string, prev, cur []byte, mask *[maskWords]uint64) {
	if len(prev) != PageSize || len(cur) != PageSize {
		panic(fmt.Sprintf("pagediff.%s: pages are %d and %d bytes, want %d", fn, len(prev), len(cur), PageSize))
	}
	impl.diffMask(prev, cur, mask[:])
}

// nextSet returns the index of the first set bit at or after i, or pageWords.
func nextSet(mask *[maskWords]uint64, i int) int {
	for i < pageWords {
		m := mask[i/64] >> (i % 64)
		if m != 0 {
			return i + bits.TrailingZeros64(m)
		}
		i = (i/64 + 1) * 64
	}
	return pageWords
}

// nextClear returns the index of the first clear bit at or after i, or pageWords.
func nextClear(mask *[maskWords]uint64, i int) int {
	for i < pageWords {
		m := ^mask[i/64] >> (i % 64)
		if m != 0 {
			return min(i+bits.TrailingZeros64(m), pageWords)
		}
		i = (i/64 + 1) * 64
	}
	return pageWords
}

func checkPair(fn string, a, b []byte) {
	if len(a) != len(b) || len(a)%WordSize != 0 {
		panic(fmt.Sprintf("pagediff.%s: lengths %d and %d must be equal multiples of %d", fn, len(a), len(b), WordSize))
	}
}
