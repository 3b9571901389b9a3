// AVX-512F loops for pagediff (only AVX512F instructions: EVEX ZMM
// compares into opmask registers, masked stores, KMOVW). Selected only when
// CPUID and XCR0 (opmask, ZMM_Hi256, Hi16_ZMM state) allow it; see
// arch_amd64.go.

#include "textflag.h"

// func diffMaskAVX512(a, b []byte, mask []uint64)
// VPCMPUQ $4 (not-equal) turns 64 bytes into 8 differ bits in an opmask
// register; eight of them make one mask word. R9 gathers the bits, CX is
// the bit position, DX walks mask.
TEXT ·diffMaskAVX512(SB), NOSPLIT, $0-72
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), BX
	MOVQ b_base+24(FP), DI
	MOVQ mask_base+48(FP), DX
	CMPQ BX, $512
	JB   tail

chunk:
	XORQ R9, R9
	XORQ CX, CX

block:
	VMOVDQU64 0(SI), Z0
	VMOVDQU64 64(SI), Z1
	VPCMPUQ   $4, 0(DI), Z0, K1
	VPCMPUQ   $4, 64(DI), Z1, K2
	KMOVW     K1, AX
	KMOVW     K2, R10
	SHLL      $8, R10
	ORL       R10, AX             // 16 differ bits for 128 bytes
	SHLQ      CX, AX
	ORQ       AX, R9
	ADDQ      $128, SI
	ADDQ      $128, DI
	ADDL      $16, CX
	CMPL      CX, $64
	JB        block
	MOVQ      R9, (DX)
	ADDQ      $8, DX
	SUBQ      $512, BX
	CMPQ      BX, $512
	JAE       chunk
	VZEROUPPER

tail:
	TESTQ BX, BX
	JZ    done
	XORQ  R9, R9
	MOVQ  $1, R10

tailloop:
	MOVQ (SI), AX
	CMPQ AX, (DI)
	JEQ  same
	ORQ  R10, R9

same:
	SHLQ $1, R10
	ADDQ $8, SI
	ADDQ $8, DI
	SUBQ $8, BX
	JNZ  tailloop
	MOVQ R9, (DX)

done:
	RET

// func applyAVX512(dst, src []byte) int
// Branch-free per 256-byte block: VPCMPUQ $4 marks the differing words in
// K1-K4, a masked VMOVDQU64 stores only those words (masked-off lanes are
// not written), and a merge-masked VPSUBQ of -1 counts them per lane in Z8.
// With no data-dependent branches a sparse change costs no mispredict.
TEXT ·applyAVX512(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), BX
	MOVQ src_base+24(FP), SI
	XORQ R8, R8
	CMPQ BX, $256
	JB   words
	VPXORQ     Z8, Z8, Z8          // per-lane count of words written
	VPTERNLOGD $0xff, Z9, Z9, Z9   // all ones: -1 in every lane

loop256:
	VMOVDQU64 0(SI), Z0
	VMOVDQU64 64(SI), Z1
	VMOVDQU64 128(SI), Z2
	VMOVDQU64 192(SI), Z3
	VPCMPUQ   $4, 0(DI), Z0, K1
	VPCMPUQ   $4, 64(DI), Z1, K2
	VPCMPUQ   $4, 128(DI), Z2, K3
	VPCMPUQ   $4, 192(DI), Z3, K4
	VMOVDQU64 Z0, K1, 0(DI)
	VMOVDQU64 Z1, K2, 64(DI)
	VMOVDQU64 Z2, K3, 128(DI)
	VMOVDQU64 Z3, K4, 192(DI)
	VPSUBQ    Z9, Z8, K1, Z8
	VPSUBQ    Z9, Z8, K2, Z8
	VPSUBQ    Z9, Z8, K3, Z8
	VPSUBQ    Z9, Z8, K4, Z8
	ADDQ      $256, SI
	ADDQ      $256, DI
	SUBQ      $256, BX
	CMPQ      BX, $256
	JAE       loop256

	// Sum the eight lanes of Z8 into R8.
	VEXTRACTI64X4 $1, Z8, Y1
	VPADDQ        Y1, Y8, Y8
	VEXTRACTI128  $1, Y8, X1
	VPADDQ        X1, X8, X8
	VPSHUFD       $0x4e, X8, X1
	VPADDQ        X1, X8, X8
	VMOVQ         X8, R8
	VZEROUPPER

words:
	TESTQ BX, BX
	JZ    done

wordloop:
	MOVQ (SI), AX
	CMPQ AX, (DI)
	JEQ  wsame
	MOVQ AX, (DI)
	INCQ R8

wsame:
	ADDQ $8, SI
	ADDQ $8, DI
	SUBQ $8, BX
	JNZ  wordloop

done:
	MOVQ R8, ret+48(FP)
	RET
