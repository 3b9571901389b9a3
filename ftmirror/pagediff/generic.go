package pagediff

import "encoding/binary"

var le = binary.LittleEndian

func isZeroGeneric(p []byte) bool {
	var acc uint64
	for len(p) >= 32 {
		acc |= le.Uint64(p) | le.Uint64(p[8:]) | le.Uint64(p[16:]) | le.Uint64(p[24:])
		if acc != 0 {
			return false
		}
		p = p[32:]
	}
	for ; len(p) >= WordSize; p = p[WordSize:] {
		acc |= le.Uint64(p)
	}
	return acc == 0
}

func diffMaskGeneric(a, b []byte, mask []uint64) {
	n := len(a) / WordSize
	b = b[:len(a)]
	for m := 0; m*64 < n; m++ {
		var bitsSet uint64
		hi := min(n-m*64, 64)
		aa, bb := a[m*512:], b[m*512:]
		for i := 0; i < hi; i++ {
			if le.Uint64(aa[i*WordSize:]) != le.Uint64(bb[i*WordSize:]) {
				bitsSet |= 1 << i
			}
		}
		mask[m] = bitsSet
	}
}

func applyGeneric(dst, src []byte) int {
	src = src[:len(dst)]
	n := 0
	for i := 0; i+WordSize <= len(dst); i += WordSize {
		if w := le.Uint64(src[i:]); w != le.Uint64(dst[i:]) {
			le.PutUint64(dst[i:], w)
			n++
		}
	}
	return n
}
