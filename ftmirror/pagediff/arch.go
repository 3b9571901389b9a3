package pagediff

// arch is the three-function interface every implementation of the hot
// loops provides (STYLE.md example 14). Callers guarantee: equal lengths,
// lengths a multiple of WordSize, and for diffMask len(mask) >=
// ceil(len(a)/WordSize/64). Slices need not be aligned.
type arch struct {
	name string
	// isZero reports whether every byte of p is zero.
	isZero func(p []byte) bool
	// diffMask sets bit i%64 of mask[i/64] when word i of a and b differ
	// and clears it otherwise, for every word; the bits past the last word
	// in the last mask word it writes are cleared.
	diffMask func(a, b []byte, mask []uint64)
	// apply stores into dst each word of src that differs from dst and
	// returns the number of words stored.
	apply func(dst, src []byte) int
}

// portable is the pure Go implementation, the reference for the others.
var portable = arch{
	name:     "generic",
	isZero:   isZeroGeneric,
	diffMask: diffMaskGeneric,
	apply:    applyGeneric,
}

// impl is the implementation in use, chosen at init by the arch file.
var impl = bestArch()

// Impl names the implementation in use: "avx512", "avx2", "sse2" or
// "generic". The vector ones need the OS to enable their register state
// (XCR0), which is why doppel reports it at boot.
func Impl() string { return impl.name }
