package pagediff

import "golang.org/x/sys/cpu"

// The amd64 loops live in pagediff_amd64.s. Every variant handles any length
// that is a multiple of WordSize and any alignment of the slice start: the
// vector loops use unaligned loads (MOVOU, VMOVDQU, VEX memory operands) and
// scalar 8-byte loops finish what is left below the block size.
//
// Block sizes (the cutoffs the tests straddle):
//
//	            isZero  diffMask  apply
//	sse2        64      512       64
//	avx2        128     512       256
//	avx512      128     512       256

//go:noescape
func isZeroSSE2(p []byte) bool

//go:noescape
func diffMaskSSE2(a, b []byte, mask []uint64)

//go:noescape
func applySSE2(dst, src []byte) int

//go:noescape
func isZeroAVX2(p []byte) bool

//go:noescape
func diffMaskAVX2(a, b []byte, mask []uint64)

//go:noescape
func applyAVX2(dst, src []byte) int

var sse2 = arch{name: "sse2", isZero: isZeroSSE2, diffMask: diffMaskSSE2, apply: applySSE2}

var avx2 = arch{name: "avx2", isZero: isZeroAVX2, diffMask: diffMaskAVX2, apply: applyAVX2}

//go:noescape
func diffMaskAVX512(a, b []byte, mask []uint64)

//go:noescape
func applyAVX512(dst, src []byte) int

// avx512 keeps the AVX2 zero check, which already outruns copy().
var avx512 = arch{name: "avx512", isZero: isZeroAVX2, diffMask: diffMaskAVX512, apply: applyAVX512}

// hasAVX2 is true when CPUID reports AVX2 and the OS has enabled YMM state.
// x/sys/cpu derives HasAVX/HasAVX2 from CPUID.1:ECX.OSXSAVE and XGETBV(0)
// bits 1-2; on the bare-metal kernel the boot layer enables that state
// (boot/doc.go) unless doppel.xsave=sse.
var hasAVX2 = cpu.X86.HasAVX && cpu.X86.HasAVX2

// hasAVX512 is true when CPUID reports AVX512F and XCR0 enables the opmask
// and ZMM state (x/sys/cpu checks XCR0 bits 5-7 on top of the AVX checks).
var hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F

// archs lists the implementations this machine can run, best last.
func archs() []arch {
	a := []arch{portable, sse2} // SSE2 is part of the amd64 baseline
	if hasAVX2 {
		a = append(a, avx2)
	}
	if hasAVX512 {
		a = append(a, avx512)
	}
	return a
}

func bestArch() arch {
	a := archs()
	return a[len(a)-1]
}
