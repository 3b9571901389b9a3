// amd64 loops for pagediff; see arch.go for the contract and
// arch_amd64.go for the block sizes. Registers: SI/DI walk the two
// slices, BX counts the bytes left, R8 counts words written. All loads are
// unaligned (MOVOU, VMOVDQU, or VEX memory operands, which do not fault on
// misalignment), so any slice start is fine. Lengths are multiples of 8.

#include "textflag.h"

// func isZeroSSE2(p []byte) bool
TEXT ·isZeroSSE2(SB), NOSPLIT, $0-25
	MOVQ p_base+0(FP), SI
	MOVQ p_len+8(FP), BX
	PXOR X7, X7
	CMPQ BX, $64
	JB   words

loop64:
	MOVOU    0(SI), X0
	MOVOU    16(SI), X1
	MOVOU    32(SI), X2
	MOVOU    48(SI), X3
	POR      X1, X0
	POR      X3, X2
	POR      X2, X0
	PCMPEQB  X7, X0       // 0xff in each zero byte
	PMOVMSKB X0, AX
	CMPL     AX, $0xffff
	JNE      nonzero
	ADDQ     $64, SI
	SUBQ     $64, BX
	CMPQ     BX, $64
	JAE      loop64

words:
	TESTQ BX, BX
	JZ    zero
	MOVQ  (SI), AX
	TESTQ AX, AX
	JNZ   nonzero
	ADDQ  $8, SI
	SUBQ  $8, BX
	JMP   words

zero:
	MOVB $1, ret+24(FP)
	RET

nonzero:
	MOVB $0, ret+24(FP)
	RET

// func isZeroAVX2(p []byte) bool
TEXT ·isZeroAVX2(SB), NOSPLIT, $0-25
	MOVQ p_base+0(FP), SI
	MOVQ p_len+8(FP), BX
	CMPQ BX, $128
	JB   words

loop128:
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VPOR    64(SI), Y0, Y0
	VPOR    96(SI), Y1, Y1
	VPOR    Y1, Y0, Y0
	VPTEST  Y0, Y0         // ZF=1 iff all 128 bytes are zero
	JNZ     nonzeroVZ
	ADDQ    $128, SI
	SUBQ    $128, BX
	CMPQ    BX, $128
	JAE     loop128
	VZEROUPPER

words:
	TESTQ BX, BX
	JZ    zero
	MOVQ  (SI), AX
	TESTQ AX, AX
	JNZ   nonzero
	ADDQ  $8, SI
	SUBQ  $8, BX
	JMP   words

zero:
	MOVB $1, ret+24(FP)
	RET

nonzeroVZ:
	VZEROUPPER

nonzero:
	MOVB $0, ret+24(FP)
	RET

// func diffMaskSSE2(a, b []byte, mask []uint64)
// R9 gathers the equal-word bits of one 512-byte chunk, CX is the bit
// position of the current 64-byte block, DX walks mask.
TEXT ·diffMaskSSE2(SB), NOSPLIT, $0-72
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
	MOVOU   0(SI), X0
	MOVOU   0(DI), X4
	PCMPEQL X4, X0               // dwords equal, words 0-1
	MOVOU   16(SI), X1
	MOVOU   16(DI), X5
	PCMPEQL X5, X1               // words 2-3
	MOVOU   32(SI), X2
	MOVOU   32(DI), X4
	PCMPEQL X4, X2               // words 4-5
	MOVOU   48(SI), X3
	MOVOU   48(DI), X5
	PCMPEQL X5, X3               // words 6-7
	MOVAPS  X0, X4
	SHUFPS  $0x88, X1, X0        // low dwords of words 0-3
	SHUFPS  $0xdd, X1, X4        // high dwords of words 0-3
	PAND    X4, X0               // word equal iff both halves equal
	MOVAPS  X2, X5
	SHUFPS  $0x88, X3, X2
	SHUFPS  $0xdd, X3, X5
	PAND    X5, X2
	MOVMSKPS X0, AX
	MOVMSKPS X2, R10
	SHLL    $4, R10
	ORL     R10, AX              // 8 equal bits for this block
	SHLQ    CX, AX
	ORQ     AX, R9
	ADDQ    $64, SI
	ADDQ    $64, DI
	ADDL    $8, CX
	CMPL    CX, $64
	JB      block
	NOTQ    R9
	MOVQ    R9, (DX)
	ADDQ    $8, DX
	SUBQ    $512, BX
	CMPQ    BX, $512
	JAE     chunk

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

// func diffMaskAVX2(a, b []byte, mask []uint64)
// As diffMaskSSE2 with 128-byte blocks of 16 words.
TEXT ·diffMaskAVX2(SB), NOSPLIT, $0-72
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
	VMOVDQU   0(SI), Y0
	VPCMPEQQ  0(DI), Y0, Y0
	VMOVDQU   32(SI), Y1
	VPCMPEQQ  32(DI), Y1, Y1
	VMOVDQU   64(SI), Y2
	VPCMPEQQ  64(DI), Y2, Y2
	VMOVDQU   96(SI), Y3
	VPCMPEQQ  96(DI), Y3, Y3
	VMOVMSKPD Y0, AX
	VMOVMSKPD Y1, R10
	VMOVMSKPD Y2, R11
	VMOVMSKPD Y3, R12
	SHLL      $4, R10
	SHLL      $8, R11
	SHLL      $12, R12
	ORL       R10, AX
	ORL       R12, R11
	ORL       R11, AX            // 16 equal bits for this block
	SHLQ      CX, AX
	ORQ       AX, R9
	ADDQ      $128, SI
	ADDQ      $128, DI
	ADDL      $16, CX
	CMPL      CX, $64
	JB        block
	NOTQ      R9
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

// func applySSE2(dst, src []byte) int
// Fast path: XOR 64 bytes of src and dst, OR the four results and check
// for zero. Slow path: a 64-bit mask of unequal bytes (8 per word), then one
// BSF per differing word.
TEXT ·applySSE2(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), BX
	MOVQ src_base+24(FP), SI
	XORQ R8, R8
	PXOR X7, X7
	CMPQ BX, $64
	JB   words

loop64:
	MOVOU    0(SI), X0
	MOVOU    0(DI), X4
	PXOR     X4, X0
	MOVOU    16(SI), X1
	MOVOU    16(DI), X5
	PXOR     X5, X1
	MOVOU    32(SI), X2
	MOVOU    32(DI), X4
	PXOR     X4, X2
	MOVOU    48(SI), X3
	MOVOU    48(DI), X5
	PXOR     X5, X3
	MOVO     X0, X6
	POR      X1, X6
	POR      X2, X6
	POR      X3, X6
	PCMPEQB  X7, X6
	PMOVMSKB X6, AX
	CMPL     AX, $0xffff
	JNE      slow64

next64:
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $64, BX
	CMPQ BX, $64
	JAE  loop64

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

slow64:
	PCMPEQB  X7, X0              // 0xff where the byte is equal
	PCMPEQB  X7, X1
	PCMPEQB  X7, X2
	PCMPEQB  X7, X3
	PMOVMSKB X0, AX
	PMOVMSKB X1, R10
	PMOVMSKB X2, R11
	PMOVMSKB X3, R12
	SHLQ     $16, R10
	SHLQ     $32, R11
	SHLQ     $48, R12
	ORQ      R10, AX
	ORQ      R12, R11
	ORQ      R11, AX
	NOTQ     AX                  // bit 8w+k: byte k of word w differs

bitloop:
	BSFQ AX, CX
	SHRQ $3, CX                  // word index
	MOVQ (SI)(CX*8), R10
	MOVQ R10, (DI)(CX*8)
	INCQ R8
	SHLQ $3, CX
	MOVQ $0xff, R11
	SHLQ CX, R11
	NOTQ R11
	ANDQ R11, AX                 // drop the word's 8 bits
	JNZ  bitloop
	JMP  next64

// func applyAVX2(dst, src []byte) int
// As applySSE2 with 256-byte blocks (one VPTEST per 32 words keeps the
// fast path at two loads per 32 bytes and little else); the slow path
// compares qwords directly (VPCMPEQQ) for one mask bit per word.
TEXT ·applyAVX2(SB), NOSPLIT, $0-56
	MOVQ  dst_base+0(FP), DI
	MOVQ  dst_len+8(FP), BX
	MOVQ  src_base+24(FP), SI
	XORQ  R8, R8
	CMPQ  BX, $256
	JB    words
	VPXOR Y15, Y15, Y15

loop256:
	VMOVDQU 0(SI), Y0
	VPXOR   0(DI), Y0, Y0
	VMOVDQU 32(SI), Y1
	VPXOR   32(DI), Y1, Y1
	VMOVDQU 64(SI), Y2
	VPXOR   64(DI), Y2, Y2
	VMOVDQU 96(SI), Y3
	VPXOR   96(DI), Y3, Y3
	VMOVDQU 128(SI), Y4
	VPXOR   128(DI), Y4, Y4
	VMOVDQU 160(SI), Y5
	VPXOR   160(DI), Y5, Y5
	VMOVDQU 192(SI), Y6
	VPXOR   192(DI), Y6, Y6
	VMOVDQU 224(SI), Y7
	VPXOR   224(DI), Y7, Y7
	VPOR    Y1, Y0, Y8
	VPOR    Y3, Y2, Y9
	VPOR    Y5, Y4, Y10
	VPOR    Y7, Y6, Y11
	VPOR    Y9, Y8, Y8
	VPOR    Y11, Y10, Y10
	VPOR    Y10, Y8, Y8
	VPTEST  Y8, Y8
	JNZ     slow256

next256:
	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $256, BX
	CMPQ BX, $256
	JAE  loop256
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

slow256:
	VPCMPEQQ  Y15, Y0, Y0        // all-ones where the word is equal
	VPCMPEQQ  Y15, Y1, Y1
	VPCMPEQQ  Y15, Y2, Y2
	VPCMPEQQ  Y15, Y3, Y3
	VPCMPEQQ  Y15, Y4, Y4
	VPCMPEQQ  Y15, Y5, Y5
	VPCMPEQQ  Y15, Y6, Y6
	VPCMPEQQ  Y15, Y7, Y7
	VMOVMSKPD Y0, AX
	VMOVMSKPD Y1, R10
	VMOVMSKPD Y2, R11
	VMOVMSKPD Y3, R12
	SHLL      $4, R10
	SHLL      $8, R11
	SHLL      $12, R12
	ORL       R10, AX
	ORL       R12, R11
	ORL       R11, AX
	VMOVMSKPD Y4, R9
	VMOVMSKPD Y5, R10
	VMOVMSKPD Y6, R11
	VMOVMSKPD Y7, R12
	SHLL      $4, R10
	SHLL      $8, R11
	SHLL      $12, R12
	ORL       R10, R9
	ORL       R12, R11
	ORL       R11, R9
	SHLL      $16, R9
	ORL       R9, AX
	NOTL      AX                 // bit w: word w differs
	CMPL      AX, $-1
	JEQ       alldiffer

bitloop:
	BSFL AX, CX
	MOVQ (SI)(CX*8), R10
	MOVQ R10, (DI)(CX*8)
	INCQ R8
	LEAL -1(AX), R11
	ANDL R11, AX                 // clear the lowest set bit
	JNZ  bitloop
	JMP  next256

alldiffer:
	// Every word of the block differs: store the whole block.
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VMOVDQU 128(SI), Y4
	VMOVDQU 160(SI), Y5
	VMOVDQU 192(SI), Y6
	VMOVDQU 224(SI), Y7
	VMOVDQU Y0, 0(DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	VMOVDQU Y4, 128(DI)
	VMOVDQU Y5, 160(DI)
	VMOVDQU Y6, 192(DI)
	VMOVDQU Y7, 224(DI)
	ADDQ    $32, R8
	JMP     next256
