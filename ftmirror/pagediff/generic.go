package pagediff

import "encoding/binary"

// The portable loops work on 32-byte groups (four words) re-sliced with a
// fixed length so the compiler drops the bounds checks, then finish word by
// word. They are the reference the arch versions are tested against.

var le = binary.LittleEndian

func isZeroGeneric(p []byte) bool {
	for len(p) >= 32 {
		q := p[:32:32]
		if le.Uint64(q)|le.Uint64(q[8:])|le.Uint64(q[16:])|le.Uint64(q[24:]) != 0 {
			return false
		}
		p = p[32:]
	}
	for ; len(p) >= WordSize; p = p[WordSize:] {
		if le.Uint64(p) != 0 {
			return false
		}
	}
	return true
}

// xor4 returns the OR of the XORs of the four words of two 32-byte groups:
// zero iff the groups are equal.
func xor4(a, b []byte) uint64 {
	a, b = a[:32:32], b[:32:32]
	// ^ and | share a precedence level in Go: the parentheses matter.
	return (le.Uint64(a) ^ le.Uint64(b)) | (le.Uint64(a[8:]) ^ le.Uint64(b[8:])) |
		(le.Uint64(a[16:]) ^ le.Uint64(b[16:])) | (le.Uint64(a[24:]) ^ le.Uint64(b[24:]))
}

func diffMaskGeneric(a, b []byte, mask []uint64) {
	b = b[:len(a)]
	for m := 0; len(a) > 0; m++ {
		var bitsSet uint64
		i := 0
		for ; i < 64 && len(a) >= 32; i += 4 {
			if xor4(a, b) != 0 {
				bitsSet |= wordBits(a[:32], b[:32]) << i
			}
			a, b = a[32:], b[32:]
		}
		if i < 64 {
			bitsSet |= wordBits(a, b) << i
			a = a[len(a):]
		}
		mask[m] = bitsSet
	}
}

// wordBits returns bit i set when word i of a and b differ (len(a) <= 512).
func wordBits(a, b []byte) uint64 {
	b = b[:len(a)]
	var m uint64
	for i := 0; len(a) >= WordSize; i++ {
		if le.Uint64(a) != le.Uint64(b) {
			m |= 1 << i
		}
		a, b = a[WordSize:], b[WordSize:]
	}
	return m
}

func applyGeneric(dst, src []byte) int {
	src = src[:len(dst)]
	n := 0
	for len(dst) >= 32 {
		if xor4(dst, src) != 0 {
			n += applyWords(dst[:32], src[:32])
		}
		dst, src = dst[32:], src[32:]
	}
	return n + applyWords(dst, src)
}

// applyWords is the word-by-word apply.
func applyWords(dst, src []byte) int {
	src = src[:len(dst)]
	n := 0
	for ; len(dst) >= WordSize; dst, src = dst[WordSize:], src[WordSize:] {
		if w := le.Uint64(src); w != le.Uint64(dst) {
			le.PutUint64(dst, w)
			n++
		}
	}
	return n
}
