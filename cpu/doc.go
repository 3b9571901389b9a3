// Package cpu is the one package in doppel that executes privileged x86-64
// instructions. Each instruction lives in a one-instruction assembly stub in
// cpu_amd64.s (with its `// func` signature and mnemonic); everything else
// reaches hardware through the small Go wrappers and interfaces here, which a
// host fake can back in tests.
//
// References (Intel 64 and IA-32 Architectures Software Developer's Manual):
//   - CPUID: Vol. 2A, chapter 3, "CPUID—CPU Identification".
//   - RDMSR/WRMSR: Vol. 2B, chapter 4; MSR addresses: Vol. 4, chapter 2.
//   - IN/OUT: Vol. 2A ch. 3 and Vol. 2B ch. 4; the I/O address space: Vol. 1, chapter 19.
//   - Control registers CR0/CR3/CR4: Vol. 3A, section 2.5.
//   - Debug registers DR0-DR3 and DR6 (a guest's, which no VMCS or VMCB
//     field holds): Vol. 2B ch. 4, "MOV—Move to/from Debug Registers", and
//     Vol. 3B, section 18.2.
//   - RDTSC/RDTSCP and the time-stamp counter: Vol. 2B ch. 4 and Vol. 3B, section 18.17.
//
// CPUID, RDTSC and RDTSCP run in any ring (on a Linux host too). RDMSR, WRMSR,
// IN, OUT and MOV from CRn or DRn are privileged: under the boot layer the kernel runs
// in ring 0 and they work; on a Linux host they raise #GP, which the Go runtime
// turns into a fatal SIGSEGV. Callers must check where they run first (see
// board.OnBareMetal).
//
// Per-CPU state (MSRs, the APIC ID, TSC_AUX) belongs to the CPU the calling
// thread runs on: pin the goroutine (runtime.LockOSThread plus
// sched_setaffinity) before reading it.
package cpu
