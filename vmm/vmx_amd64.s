// VMX instruction stubs, BYTE-encoded: the Go assembler has no VMX
// mnemonics. Each stub names the instruction and its encoding (SDM Vol. 3C
// ch. 31 "VMX Instruction Reference"; ModRM per Vol. 2A 2.1.5).
//
// VMX instructions report failure in RFLAGS (31.2): CF=1 is VMfailInvalid
// (no current VMCS), ZF=1 is VMfailValid (the VM-instruction error field
// says why). The stubs return 0 for success, 1 for VMfailInvalid, 2 for
// VMfailValid. All run in ring 0 on a pinned thread.

#include "textflag.h"

// FLAGS_TO_RESULT stores 0/1/2 from CF and ZF into the byte at ret.
#define FLAGS_TO_RESULT(ret) \
	SETCS BX; \
	SETEQ CX; \
	MOVBQZX BX, BX; \
	MOVBQZX CX, CX; \
	SHLQ $1, CX; \
	ORQ CX, BX; \
	MOVB BX, ret

// func vmxon(pa uint64) uint8
// VMXON m64: F3 0F C7 /6, ModRM 0x30 = [RAX]. m64 holds the VMXON region's
// physical address (24.11.5).
TEXT ·vmxon(SB), NOSPLIT, $0-9
	LEAQ pa+0(FP), AX
	BYTE $0xF3; BYTE $0x0F; BYTE $0xC7; BYTE $0x30
	FLAGS_TO_RESULT(ret+8(FP))
	RET

// func vmxoff() uint8
// VMXOFF: 0F 01 C4.
TEXT ·vmxoff(SB), NOSPLIT, $0-1
	BYTE $0x0F; BYTE $0x01; BYTE $0xC4
	FLAGS_TO_RESULT(ret+0(FP))
	RET

// func vmclear(pa uint64) uint8
// VMCLEAR m64: 66 0F C7 /6, ModRM 0x30 = [RAX].
TEXT ·vmclear(SB), NOSPLIT, $0-9
	LEAQ pa+0(FP), AX
	BYTE $0x66; BYTE $0x0F; BYTE $0xC7; BYTE $0x30
	FLAGS_TO_RESULT(ret+8(FP))
	RET

// func vmptrld(pa uint64) uint8
// VMPTRLD m64: 0F C7 /6, ModRM 0x30 = [RAX].
TEXT ·vmptrld(SB), NOSPLIT, $0-9
	LEAQ pa+0(FP), AX
	BYTE $0x0F; BYTE $0xC7; BYTE $0x30
	FLAGS_TO_RESULT(ret+8(FP))
	RET

// func vmread(field uint64) (value uint64, res uint8)
// VMREAD r/m64, r64: 0F 78 /r, ModRM 0xC8 = RAX (destination), RCX (field).
TEXT ·vmread(SB), NOSPLIT, $0-17
	MOVQ field+0(FP), CX
	XORQ AX, AX
	BYTE $0x0F; BYTE $0x78; BYTE $0xC8
	MOVQ AX, value+8(FP)
	FLAGS_TO_RESULT(res+16(FP))
	RET

// func vmwrite(field, value uint64) uint8
// VMWRITE r64, r/m64: 0F 79 /r, ModRM 0xC8 = RCX (field), RAX (value).
TEXT ·vmwrite(SB), NOSPLIT, $0-17
	MOVQ field+0(FP), CX
	MOVQ value+8(FP), AX
	BYTE $0x0F; BYTE $0x79; BYTE $0xC8
	FLAGS_TO_RESULT(ret+16(FP))
	RET

// func invept(typ uint64, desc *[2]uint64) uint8
// INVEPT r64, m128: 66 0F 38 80 /r, ModRM 0x08 = RCX (type), [RAX]
// (descriptor: EPTP, reserved 0). Type 1 single-context, 2 all-context.
TEXT ·invept(SB), NOSPLIT, $0-17
	MOVQ typ+0(FP), CX
	MOVQ desc+8(FP), AX
	BYTE $0x66; BYTE $0x0F; BYTE $0x38; BYTE $0x80; BYTE $0x08
	FLAGS_TO_RESULT(ret+16(FP))
	RET

// func vmentry(regs *Regs, launched bool, fpu *fpuSwitch) uint8
//
// Enters the guest with the registers in regs and returns at its next VM
// exit (0) or when the entry fails (1 VMfailInvalid, 2 VMfailValid).
// Interrupts are off from before HOST_RSP is written until after the exit:
// with guest registers loaded no host interrupt may run, and Go stacks move,
// so HOST_RSP and HOST_RIP are written here, immediately before each entry.
// At HOST_RSP the stack holds [regs][fpu][saved BP][return address][args],
// which vmexitEntry unwinds.
//
// With fpu non-nil the guest's x87/SSE/AVX state is switched here too
// (xsave.go): the host's x87/SSE goes to fpu.host (FXSAVE); then either
// FXRSTOR of the guest area's legacy region (switchXCR0 0) or XSETBV
// switchXCR0, XRSTOR of the whole guest area and XSETBV guestXCR0. After
// the exit the reverse (XSAVE under switchXCR0, VZEROUPPER, XSETBV
// hostXCR0, FXRSTOR), all with interrupts off. It cannot be done from Go:
// Go code between the restore and the entry would clobber X15 and MXCSR.
TEXT ·vmentry(SB), NOSPLIT, $0-25
	MOVQ regs+0(FP), AX
	MOVBQZX launched+8(FP), BX
	MOVQ fpu+16(FP), DX
	CLI
	PUSHQ BP
	PUSHQ DX
	PUSHQ AX
	TESTQ DX, DX
	JZ   nofpu
	MOVQ DX, DI
	FXSAVE64 0(DI)
	MOVQ 512(DI), SI
	MOVQ 528(DI), AX
	TESTQ AX, AX
	JNZ  xrstorguest
	FXRSTOR64 0(SI)
	JMP  fpudone
xrstorguest:
	// XSETBV: XCR[ECX] = EDX:EAX (SDM Vol. 2D).
	MOVQ AX, DX
	SHRQ $32, DX
	XORL CX, CX
	XSETBV
	// XRSTOR64 with EDX:EAX all ones: every component of XCR0.
	MOVL $-1, AX
	MOVL $-1, DX
	XRSTOR64 0(SI)
	MOVQ 520(DI), AX
	MOVQ AX, DX
	SHRQ $32, DX
	XORL CX, CX
	XSETBV
fpudone:
	MOVQ 0(SP), AX
nofpu:
	// VMWRITE HOST_RSP (0x6C14), RSP: 0F 79 /r, ModRM 0xCC = RCX, RSP.
	MOVQ $0x6C14, CX
	BYTE $0x0F; BYTE $0x79; BYTE $0xCC
	JBE  entryfail
	// VMWRITE HOST_RIP (0x6C16), RDX: ModRM 0xCA = RCX, RDX.
	MOVQ $·vmexitEntry(SB), DX
	MOVQ $0x6C16, CX
	BYTE $0x0F; BYTE $0x79; BYTE $0xCA
	JBE  entryfail
	// The guest's CR2 (Regs.CR2), after the last access here that could
	// fault (both ends of regs read first: a host #PF writes CR2) and
	// before the CMP (MOV to CR2 leaves the flags undefined).
	// MOV CR2, RCX: 0F 22 /r, ModRM 0xD1 = CR2, RCX.
	MOVQ 0(AX), CX
	MOVQ 120(AX), CX
	BYTE $0x0F; BYTE $0x22; BYTE $0xD1
	CMPQ BX, $0
	// MOVs keep the flags of the CMP for the JNE below.
	MOVQ 8(AX), BX
	MOVQ 16(AX), CX
	MOVQ 24(AX), DX
	MOVQ 32(AX), SI
	MOVQ 40(AX), DI
	MOVQ 48(AX), BP
	MOVQ 56(AX), R8
	MOVQ 64(AX), R9
	MOVQ 72(AX), R10
	MOVQ 80(AX), R11
	MOVQ 88(AX), R12
	MOVQ 96(AX), R13
	MOVQ 104(AX), R14
	MOVQ 112(AX), R15
	MOVQ 0(AX), AX
	JNE  resume
	// VMLAUNCH: 0F 01 C2.
	BYTE $0x0F; BYTE $0x01; BYTE $0xC2
	JMP  entryfail
resume:
	// VMRESUME: 0F 01 C3.
	BYTE $0x0F; BYTE $0x01; BYTE $0xC3
entryfail:
	// The result in BX first: the state switch below clobbers flags.
	SETCS BX
	SETEQ CX
	MOVBQZX BX, BX
	MOVBQZX CX, CX
	SHLQ $1, CX
	ORQ  CX, BX
	POPQ AX
	POPQ DI
	POPQ BP
	TESTQ DI, DI
	JZ   failnofpu
	// The guest did not run: its state is still in its area; only the
	// host's comes back.
	MOVQ 528(DI), AX
	TESTQ AX, AX
	JZ   failhost
	MOVQ AX, DX
	SHRQ $32, DX
	XORL CX, CX
	XSETBV
	TESTQ $4, AX
	JZ   failxcr0
	VZEROUPPER
failxcr0:
	MOVQ 536(DI), AX
	MOVQ AX, DX
	SHRQ $32, DX
	XORL CX, CX
	XSETBV
failhost:
	FXRSTOR64 0(DI)
failnofpu:
	STI
	MOVB BX, ret+24(FP)
	RET

// func vmexitEntry()
//
// HOST_RIP: the CPU comes here at every VM exit with RSP = HOST_RSP, the
// guest's general registers still loaded, and IF clear (27.5.3). It saves
// them into the Regs that vmentry pushed, switches x87/SSE/AVX state back
// if vmentry switched it, restores BP, writes vmentry's result (0) and
// returns to vmentry's caller. Never called from Go.
TEXT ·vmexitEntry(SB), NOSPLIT|NOFRAME, $0-0
	PUSHQ AX
	MOVQ 8(SP), AX
	MOVQ BX, 8(AX)
	// The guest's CR2 into Regs.CR2 before anything can fault.
	// MOV RBX, CR2: 0F 20 /r, ModRM 0xD3 = CR2, RBX.
	BYTE $0x0F; BYTE $0x20; BYTE $0xD3
	MOVQ BX, 120(AX)
	MOVQ CX, 16(AX)
	MOVQ DX, 24(AX)
	MOVQ SI, 32(AX)
	MOVQ DI, 40(AX)
	MOVQ BP, 48(AX)
	MOVQ R8, 56(AX)
	MOVQ R9, 64(AX)
	MOVQ R10, 72(AX)
	MOVQ R11, 80(AX)
	MOVQ R12, 88(AX)
	MOVQ R13, 96(AX)
	MOVQ R14, 104(AX)
	MOVQ R15, 112(AX)
	POPQ BX
	MOVQ BX, 0(AX)
	MOVQ 8(SP), DI
	TESTQ DI, DI
	JZ   exitnofpu
	MOVQ 512(DI), SI
	MOVQ 528(DI), AX
	TESTQ AX, AX
	JNZ  xsaveguest
	FXSAVE64 0(SI)
	JMP  exithost
xsaveguest:
	MOVQ AX, DX
	SHRQ $32, DX
	XORL CX, CX
	XSETBV
	MOVL $-1, AX
	MOVL $-1, DX
	XSAVE64 0(SI)
	// Clean upper AVX state: SSE code after it runs without the
	// dependency on it (and no guest bits linger in the host's view).
	TESTQ $4, 528(DI)
	JZ   exitxcr0
	VZEROUPPER
exitxcr0:
	MOVQ 536(DI), AX
	MOVQ AX, DX
	SHRQ $32, DX
	XORL CX, CX
	XSETBV
exithost:
	FXRSTOR64 0(DI)
exitnofpu:
	MOVQ 16(SP), BP
	ADDQ $24, SP
	// SP is at vmentry's return address: args at 8(SP), 16(SP) and
	// 24(SP), the result byte at 32(SP).
	MOVB $0, 32(SP)
	STI
	RET

// func sgdt(p *[10]byte)
// SGDT m: 0F 01 /0, ModRM 0x00 = [RAX]: limit (2 bytes) then base (8).
TEXT ·sgdt(SB), NOSPLIT, $0-8
	MOVQ p+0(FP), AX
	BYTE $0x0F; BYTE $0x01; BYTE $0x00
	RET

// func sidt(p *[10]byte)
// SIDT m: 0F 01 /1, ModRM 0x08 = [RAX].
TEXT ·sidt(SB), NOSPLIT, $0-8
	MOVQ p+0(FP), AX
	BYTE $0x0F; BYTE $0x01; BYTE $0x08
	RET

// func segments() (cs, ss, ds, es, fs, gs, tr uint16)
// MOV r32, Sreg: 8C /r (ModRM 0xC0 | sreg<<3, r/m = EAX); STR r32: 0F 00 /1.
TEXT ·segments(SB), NOSPLIT, $0-14
	XORQ AX, AX
	BYTE $0x8C; BYTE $0xC8 // mov eax, cs
	MOVW AX, cs+0(FP)
	BYTE $0x8C; BYTE $0xD0 // mov eax, ss
	MOVW AX, ss+2(FP)
	BYTE $0x8C; BYTE $0xD8 // mov eax, ds
	MOVW AX, ds+4(FP)
	BYTE $0x8C; BYTE $0xC0 // mov eax, es
	MOVW AX, es+6(FP)
	BYTE $0x8C; BYTE $0xE0 // mov eax, fs
	MOVW AX, fs+8(FP)
	BYTE $0x8C; BYTE $0xE8 // mov eax, gs
	MOVW AX, gs+10(FP)
	BYTE $0x0F; BYTE $0x00; BYTE $0xC8 // str eax
	MOVW AX, tr+12(FP)
	RET

// func peek64(addr uintptr) uint64
// Reads host memory the Go heap does not own (the GDT), by address.
TEXT ·peek64(SB), NOSPLIT, $0-16
	MOVQ addr+0(FP), AX
	MOVQ 0(AX), AX
	MOVQ AX, ret+8(FP)
	RET

// func xgetbv(xcr uint32) uint64
// XGETBV: EDX:EAX = XCR[ECX] (SDM Vol. 2D); needs CR4.OSXSAVE.
TEXT ·xgetbv(SB), NOSPLIT, $0-16
	MOVL xcr+0(FP), CX
	XGETBV
	SHLQ $32, DX
	MOVL AX, AX
	ORQ  DX, AX
	MOVQ AX, ret+8(FP)
	RET
