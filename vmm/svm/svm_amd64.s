// SVM instruction stubs, BYTE-encoded: the Go assembler has no SVM
// mnemonics. AMD APM Vol. 3 ch. 4 (VMRUN 0F 01 D8, VMLOAD 0F 01 DA,
// VMSAVE 0F 01 DB, STGI 0F 01 DC, CLGI 0F 01 DD; all take the physical
// address in RAX) and Vol. 2 15.5 "VMRUN Instruction", 15.17 "Global
// Interrupt Flag", 15.6 "#VMEXIT".

#include "textflag.h"

#define CLGI   BYTE $0x0F; BYTE $0x01; BYTE $0xDD
#define STGI   BYTE $0x0F; BYTE $0x01; BYTE $0xDC
#define VMRUN  BYTE $0x0F; BYTE $0x01; BYTE $0xD8
#define VMLOAD BYTE $0x0F; BYTE $0x01; BYTE $0xDA
#define VMSAVE BYTE $0x0F; BYTE $0x01; BYTE $0xDB

// func svmrun(vmcb, hostSave uint64, regs *vmm.Regs, fx *vmm.FXState)
//
// Runs the guest of the VMCB at physical address vmcb until its next
// #VMEXIT, with the general registers in regs (RAX, RIP, RSP, RFLAGS are
// in the VMCB). VMRUN saves and #VMEXIT restores only part of the host
// state (15.5.1: CS, SS, DS, ES, GDTR, IDTR, EFER, CR0, CR3, CR4, RFLAGS,
// RIP, RSP, RAX); the rest (FS, GS, TR, LDTR, KernelGSBase, STAR/LSTAR/
// CSTAR/SFMASK, SYSENTER) moves with VMSAVE/VMLOAD: the host's to
// hostSave, the guest's to its VMCB.
//
// From the guest's VMLOAD to the host's VMLOAD the CPU runs doppel's code
// with the guest's TR and GS: any interrupt or exception taken there
// would read its IST stack pointer from the guest's TSS and the boot
// layer's per-CPU data through the guest's GS base, both guest-virtual
// addresses taken as host ones, and push its frame wherever they point
// (or fault again, #DF, triple fault). GIF, clear from CLGI to STGI,
// holds off interrupts and NMIs (15.17); exceptions it does not hold off,
// so that window touches no memory that can fault: the stack slots and
// regs are written once before CLGI (the boot layer backs Go's memory on
// first touch, with a #PF), the window itself is only VMLOAD, the
// register loads, VMRUN, VMSAVE, one stack read and the host's VMLOAD,
// and the guest's registers are stored only after the host's state is
// back.
//
// Stack from CLGI on: [guest RCX slot][vmcb][hostSave][regs][saved BP];
// VMRUN saves RSP and #VMEXIT restores it. With fx non-nil the guest's
// x87/SSE state is switched too (FXSAVE and FXRSTOR, AMD APM Vol. 2
// 11.4.4): the host's goes to fx.Host and the guest's comes from fx.Guest
// before the entry, the reverse after it.
TEXT ·svmrun(SB), NOSPLIT, $0-32
	MOVQ fx+24(FP), DX
	TESTQ DX, DX
	JZ   nofx
	FXSAVE64 512(DX)
	FXRSTOR64 0(DX)
nofx:
	MOVQ vmcb+0(FP), AX
	MOVQ hostSave+8(FP), BX
	MOVQ regs+16(FP), CX
	PUSHQ BP
	PUSHQ CX
	PUSHQ BX
	PUSHQ AX
	PUSHQ $0 // the guest's RCX goes here after the exit
	// regs may straddle a page: write its first and last word.
	MOVQ 0(CX), DX
	MOVQ DX, 0(CX)
	MOVQ 112(CX), DX
	MOVQ DX, 112(CX)
	MOVQ AX, R8
	CLGI
	MOVQ BX, AX
	VMSAVE // host FS, GS, TR, LDTR, syscall MSRs -> hostSave
	MOVQ R8, AX
	VMLOAD // the guest's from its VMCB
	MOVQ 8(CX), BX
	MOVQ 24(CX), DX
	MOVQ 32(CX), SI
	MOVQ 40(CX), DI
	MOVQ 48(CX), BP
	MOVQ 56(CX), R8
	MOVQ 64(CX), R9
	MOVQ 72(CX), R10
	MOVQ 80(CX), R11
	MOVQ 88(CX), R12
	MOVQ 96(CX), R13
	MOVQ 104(CX), R14
	MOVQ 112(CX), R15
	MOVQ 16(CX), CX
	VMRUN
	// #VMEXIT: RAX = vmcb again, RSP restored, GIF still clear, the other
	// general registers are the guest's.
	VMSAVE // the guest's FS, GS, TR, ... -> its VMCB
	// Through AX, not SP: vet's asmdecl takes n(SP) for an argument.
	MOVQ SP, AX
	MOVQ 16(AX), AX // hostSave
	VMLOAD          // the host's FS (Go's TLS), GS, TR, ... back
	MOVQ SP, AX
	MOVQ CX, 0(AX)
	MOVQ 24(AX), CX // regs
	MOVQ BX, 8(CX)
	MOVQ DX, 24(CX)
	MOVQ SI, 32(CX)
	MOVQ DI, 40(CX)
	MOVQ BP, 48(CX)
	MOVQ R8, 56(CX)
	MOVQ R9, 64(CX)
	MOVQ R10, 72(CX)
	MOVQ R11, 80(CX)
	MOVQ R12, 88(CX)
	MOVQ R13, 96(CX)
	MOVQ R14, 104(CX)
	MOVQ R15, 112(CX)
	POPQ BX // the guest's RCX
	MOVQ BX, 16(CX)
	POPQ AX // vmcb
	POPQ BX // hostSave
	POPQ CX // regs
	POPQ BP
	STGI // a pending host interrupt (an INTR exit) is taken here
	MOVQ fx+24(FP), DX
	TESTQ DX, DX
	JZ   exitnofx
	FXSAVE64 0(DX)
	FXRSTOR64 512(DX)
exitnofx:
	RET
