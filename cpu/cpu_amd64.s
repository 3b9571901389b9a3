// One-instruction stubs for the privileged and identifying x86-64
// instructions doppel uses. See doc.go for the manual references. All are
// NOSPLIT leaf functions: they may run on any goroutine stack, and a loop that
// calls only these has no cooperative preemption point.

#include "textflag.h"

// func cpuid(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)
// CPUID (SDM Vol. 2A ch. 3): EAX = leaf, ECX = subleaf.
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL subleaf+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func rdtsc() uint64
// RDTSC (SDM Vol. 2B ch. 4): EDX:EAX = time-stamp counter.
TEXT ·rdtsc(SB), NOSPLIT, $0-8
	RDTSC
	SHLQ $32, DX
	ORQ  DX, AX
	MOVQ AX, ret+0(FP)
	RET

// func rdtscp() (tsc uint64, aux uint32)
// RDTSCP (SDM Vol. 2B ch. 4): EDX:EAX = time-stamp counter, ECX = IA32_TSC_AUX.
TEXT ·rdtscp(SB), NOSPLIT, $0-12
	RDTSCP
	SHLQ $32, DX
	ORQ  DX, AX
	MOVQ AX, tsc+0(FP)
	MOVL CX, aux+8(FP)
	RET

// func rdmsr(msr uint32) uint64
// RDMSR (SDM Vol. 2B ch. 4): EDX:EAX = MSR[ECX]. Ring 0 only.
TEXT ·rdmsr(SB), NOSPLIT, $0-16
	MOVL msr+0(FP), CX
	RDMSR
	SHLQ $32, DX
	ORQ  DX, AX
	MOVQ AX, ret+8(FP)
	RET

// func wrmsr(msr uint32, value uint64)
// WRMSR (SDM Vol. 2B ch. 4): MSR[ECX] = EDX:EAX. Ring 0 only.
TEXT ·wrmsr(SB), NOSPLIT, $0-16
	MOVL msr+0(FP), CX
	MOVQ value+8(FP), AX
	MOVQ AX, DX
	SHRQ $32, DX
	WRMSR
	RET

// func inb(port uint16) uint8
// IN AL, DX (SDM Vol. 2A ch. 3). Ring 0 (or IOPL 3) only.
TEXT ·inb(SB), NOSPLIT, $0-9
	MOVW port+0(FP), DX
	INB
	MOVB AL, ret+8(FP)
	RET

// func outb(port uint16, value uint8)
// OUT DX, AL (SDM Vol. 2B ch. 4). Ring 0 (or IOPL 3) only.
TEXT ·outb(SB), NOSPLIT, $0-3
	MOVW port+0(FP), DX
	MOVB value+2(FP), AL
	OUTB
	RET

// func inw(port uint16) uint16
// IN AX, DX (SDM Vol. 2A ch. 3). Ring 0 (or IOPL 3) only.
TEXT ·inw(SB), NOSPLIT, $0-10
	MOVW port+0(FP), DX
	INW
	MOVW AX, ret+8(FP)
	RET

// func outw(port uint16, value uint16)
// OUT DX, AX (SDM Vol. 2B ch. 4). Ring 0 (or IOPL 3) only.
TEXT ·outw(SB), NOSPLIT, $0-4
	MOVW port+0(FP), DX
	MOVW value+2(FP), AX
	OUTW
	RET

// func inl(port uint16) uint32
// IN EAX, DX (SDM Vol. 2A ch. 3). Ring 0 (or IOPL 3) only.
TEXT ·inl(SB), NOSPLIT, $0-12
	MOVW port+0(FP), DX
	INL
	MOVL AX, ret+8(FP)
	RET

// func outl(port uint16, value uint32)
// OUT DX, EAX (SDM Vol. 2B ch. 4). Ring 0 (or IOPL 3) only.
TEXT ·outl(SB), NOSPLIT, $0-8
	MOVW port+0(FP), DX
	MOVL value+4(FP), AX
	OUTL
	RET

// func readCR0() uint64
// MOV RAX, CR0 (SDM Vol. 2B ch. 4, "MOV—Move to/from Control Registers"). Ring 0 only.
TEXT ·readCR0(SB), NOSPLIT, $0-8
	MOVQ CR0, AX
	MOVQ AX, ret+0(FP)
	RET

// func readCR3() uint64
// MOV RAX, CR3. Ring 0 only.
TEXT ·readCR3(SB), NOSPLIT, $0-8
	MOVQ CR3, AX
	MOVQ AX, ret+0(FP)
	RET

// func readCR4() uint64
// MOV RAX, CR4. Ring 0 only.
TEXT ·readCR4(SB), NOSPLIT, $0-8
	MOVQ CR4, AX
	MOVQ AX, ret+0(FP)
	RET

// func writeCR0(v uint64)
// MOV CR0, RAX. Ring 0 only.
TEXT ·writeCR0(SB), NOSPLIT, $0-8
	MOVQ v+0(FP), AX
	MOVQ AX, CR0
	RET

// func writeCR4(v uint64)
// MOV CR4, RAX (e.g. CR4.VMXE before VMXON). Ring 0 only.
TEXT ·writeCR4(SB), NOSPLIT, $0-8
	MOVQ v+0(FP), AX
	MOVQ AX, CR4
	RET

// func readDebugRegs(d *DebugRegs)
// MOV RAX, DRn (SDM Vol. 2B ch. 4, "MOV—Move to/from Debug Registers"):
// 0F 21 /r, ModRM 11 n 000 (0xC0 | n<<3), always 64 bits wide in 64-bit
// mode. Spelt in bytes: Go's assembler knows DR0, DR6 and DR7 only.
// Ring 0 only.
TEXT ·readDebugRegs(SB), NOSPLIT, $0-8
	MOVQ d+0(FP), BX
	BYTE $0x0F; BYTE $0x21; BYTE $0xC0 // DR0
	MOVQ AX, 0(BX)
	BYTE $0x0F; BYTE $0x21; BYTE $0xC8 // DR1
	MOVQ AX, 8(BX)
	BYTE $0x0F; BYTE $0x21; BYTE $0xD0 // DR2
	MOVQ AX, 16(BX)
	BYTE $0x0F; BYTE $0x21; BYTE $0xD8 // DR3
	MOVQ AX, 24(BX)
	BYTE $0x0F; BYTE $0x21; BYTE $0xF0 // DR6
	MOVQ AX, 32(BX)
	RET

// func writeDebugRegs(d *DebugRegs)
// MOV DRn, RAX: 0F 23 /r, the same ModRM. Ring 0 only; a 1 in DR6 bits
// 63:32 is a #GP, which the caller rules out.
TEXT ·writeDebugRegs(SB), NOSPLIT, $0-8
	MOVQ d+0(FP), BX
	MOVQ 0(BX), AX
	BYTE $0x0F; BYTE $0x23; BYTE $0xC0 // DR0
	MOVQ 8(BX), AX
	BYTE $0x0F; BYTE $0x23; BYTE $0xC8 // DR1
	MOVQ 16(BX), AX
	BYTE $0x0F; BYTE $0x23; BYTE $0xD0 // DR2
	MOVQ 24(BX), AX
	BYTE $0x0F; BYTE $0x23; BYTE $0xD8 // DR3
	MOVQ 32(BX), AX
	BYTE $0x0F; BYTE $0x23; BYTE $0xF0 // DR6
	RET
