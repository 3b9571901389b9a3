#include "textflag.h"

// func ymmSpin(pattern *[16 * 32]byte, iters uint64) (lost uint32)
TEXT ·ymmSpin(SB), NOSPLIT, $0-20
	MOVQ pattern+0(FP), SI
	MOVQ iters+8(FP), CX
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VMOVDQU 128(SI), Y4
	VMOVDQU 160(SI), Y5
	VMOVDQU 192(SI), Y6
	VMOVDQU 224(SI), Y7
	VMOVDQU 256(SI), Y8
	VMOVDQU 288(SI), Y9
	VMOVDQU 320(SI), Y10
	VMOVDQU 352(SI), Y11
	VMOVDQU 384(SI), Y12
	VMOVDQU 416(SI), Y13
	VMOVDQU 448(SI), Y14
	VMOVDQU 480(SI), Y15
spin:
	DECQ CX
	JNZ  spin
	XORL DX, DX

// CHECK sets bit n of DX unless Yn still equals its pattern.
#define CHECK(n, off, reg) \
	VPCMPEQQ off(SI), reg, reg; \
	VPMOVMSKB reg, AX; \
	CMPL AX, $0xFFFFFFFF; \
	SETNE BX; \
	MOVBLZX BX, BX; \
	SHLL $n, BX; \
	ORL BX, DX

	CHECK(0, 0, Y0)
	CHECK(1, 32, Y1)
	CHECK(2, 64, Y2)
	CHECK(3, 96, Y3)
	CHECK(4, 128, Y4)
	CHECK(5, 160, Y5)
	CHECK(6, 192, Y6)
	CHECK(7, 224, Y7)
	CHECK(8, 256, Y8)
	CHECK(9, 288, Y9)
	CHECK(10, 320, Y10)
	CHECK(11, 352, Y11)
	CHECK(12, 384, Y12)
	CHECK(13, 416, Y13)
	CHECK(14, 448, Y14)
	CHECK(15, 480, Y15)
	VZEROUPPER
	MOVL DX, lost+16(FP)
	RET

// func zmmSpin(pattern *[16 * 64]byte, masks *[7]uint16, iters uint64) (lost uint32)
//
// As ymmSpin for the AVX-512 state ymmSpin does not reach: ZMM16-ZMM31
// (Hi16_ZMM) and the opmask registers K1-K7. Bit n of lost is ZMM(16+n),
// bit 16+n is K(n+1).
TEXT ·zmmSpin(SB), NOSPLIT, $0-28
	MOVQ pattern+0(FP), SI
	MOVQ masks+8(FP), DI
	MOVQ iters+16(FP), CX
	VMOVDQU64 0(SI), Z16
	VMOVDQU64 64(SI), Z17
	VMOVDQU64 128(SI), Z18
	VMOVDQU64 192(SI), Z19
	VMOVDQU64 256(SI), Z20
	VMOVDQU64 320(SI), Z21
	VMOVDQU64 384(SI), Z22
	VMOVDQU64 448(SI), Z23
	VMOVDQU64 512(SI), Z24
	VMOVDQU64 576(SI), Z25
	VMOVDQU64 640(SI), Z26
	VMOVDQU64 704(SI), Z27
	VMOVDQU64 768(SI), Z28
	VMOVDQU64 832(SI), Z29
	VMOVDQU64 896(SI), Z30
	VMOVDQU64 960(SI), Z31
	KMOVW 0(DI), K1
	KMOVW 2(DI), K2
	KMOVW 4(DI), K3
	KMOVW 6(DI), K4
	KMOVW 8(DI), K5
	KMOVW 10(DI), K6
	KMOVW 12(DI), K7
zspin:
	DECQ CX
	JNZ  zspin
	XORL DX, DX

// ZCHECK sets bit n of DX unless Z(16+n) still equals its pattern.
#define ZCHECK(n, off, reg) \
	VPCMPEQQ off(SI), reg, K0; \
	KMOVW K0, AX; \
	CMPL AX, $0xFF; \
	SETNE BX; \
	MOVBLZX BX, BX; \
	SHLL $n, BX; \
	ORL BX, DX

// KCHECK sets bit 16+n of DX unless K(n+1) still holds its mask.
#define KCHECK(n, off, reg) \
	KMOVW reg, AX; \
	CMPW AX, off(DI); \
	SETNE BX; \
	MOVBLZX BX, BX; \
	SHLL $(16+n), BX; \
	ORL BX, DX

	ZCHECK(0, 0, Z16)
	ZCHECK(1, 64, Z17)
	ZCHECK(2, 128, Z18)
	ZCHECK(3, 192, Z19)
	ZCHECK(4, 256, Z20)
	ZCHECK(5, 320, Z21)
	ZCHECK(6, 384, Z22)
	ZCHECK(7, 448, Z23)
	ZCHECK(8, 512, Z24)
	ZCHECK(9, 576, Z25)
	ZCHECK(10, 640, Z26)
	ZCHECK(11, 704, Z27)
	ZCHECK(12, 768, Z28)
	ZCHECK(13, 832, Z29)
	ZCHECK(14, 896, Z30)
	ZCHECK(15, 960, Z31)
	KCHECK(0, 0, K1)
	KCHECK(1, 2, K2)
	KCHECK(2, 4, K3)
	KCHECK(3, 6, K4)
	KCHECK(4, 8, K5)
	KCHECK(5, 10, K6)
	KCHECK(6, 12, K7)
	VZEROUPPER
	MOVL DX, lost+24(FP)
	RET
