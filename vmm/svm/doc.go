// Package svm runs guests under AMD-V (Secure Virtual Machine): it probes
// and reports the SVM capabilities, builds the VMCB, enters the guest with
// VMRUN and dispatches its #VMEXITs. It is the AMD twin of the VT-x code in
// vmm; the guest memory behind it is ept's tables in their nested (NPT)
// format, and the dirty pages come from the same scan of their D bits.
//
// References, AMD64 Architecture Programmer's Manual Vol. 2 (System
// Programming), ch. 15 "Secure Virtual Machine":
//   - 15.4 enabling SVM (EFER.SVME), 15.30 SVM MSRs (VM_CR 0xC0010114 with
//     SVMDIS bit 4 and LOCK bit 3, VM_HSAVE_PA 0xC0010117);
//   - 15.5 VMRUN (what it saves and loads, the consistency checks of
//     15.5.1), 15.6 #VMEXIT, 15.17 the global interrupt flag (CLGI/STGI);
//   - 15.9-15.13 intercepts: IOIO through the 12 KiB IOPM (15.10), MSRs
//     through the 8 KiB MSRPM (15.11), SHUTDOWN;
//   - 15.15.3 VMCB clean bits, 15.16 TLB control and ASIDs;
//   - 15.25 nested paging (NP_ENABLE, N_CR3, nested page faults and their
//     EXITINFO1/2);
//   - App. B the VMCB layout, App. C the exit codes;
//
// and Vol. 3 App. E (CPUID Fn8000_0001_ECX[2] SVM, Fn8000_000A: revision,
// number of ASIDs, feature bits NP 0, LbrVirt 1, SVML 2, NRIPS 3,
// TscRateMsr 4, VmcbClean 5, FlushByAsid 6, DecodeAssists 7, PauseFilter
// 10, AVIC 13).
//
// # What is shared with VT-x and what is not
//
// Shared: the guest registers (vmm.Regs, in the stub's order), the I/O bus
// and its devices (vmm.IOBus, vmm.PortDevice), the handler results
// (vmm.Action) and error sentinels (vmm.ErrUnhandledExit, ErrUnsupported,
// ErrEntryFailed, vmm.TripleFaultError for SHUTDOWN), the hypervisor CPUID
// leaf, ept's tables, walker and harvest (ept.Options.Nested selects NPT
// bits: P, R/W, U/S on every entry, A bit 5, D bit 6, PS, NX), the
// dirty-page test Device (vmm/dirtytest). Vendor-only: this package (VMCB
// in place of VMCS, exit codes in place of exit reasons, VMRUN in place of
// VMLAUNCH/VMRESUME) and ept's PML, which AMD lacks.
//
// # Entry and exit (svm_amd64.s)
//
// The stub runs with GIF clear (CLGI) from before the host state is saved
// until it is restored, then STGI: no interrupt, NMI or SMI may run while
// guest registers are loaded or the host's FS base (the Go runtime's TLS)
// is swapped out. VMRUN itself saves and #VMEXIT restores only the host's
// RAX, RSP, RIP, RFLAGS, CR0/3/4, EFER, GDTR, IDTR and CS/SS/DS/ES; the
// rest (FS, GS, TR, LDTR, KernelGSBase, the SYSCALL and SYSENTER MSRs)
// moves with VMSAVE/VMLOAD: the host's to a page of its own around every
// VMRUN, the guest's to and from its VMCB. Physical interrupts intercepted
// (INTR) with V_INTR_MASKING: while the guest runs, the host's RFLAGS.IF
// (1 in the vCPU thread) decides, the interrupt exits, and the host takes
// it at the STGI, so the boot layer's timer keeps slicing threads.
//
// # Instruction lengths
//
// IN/OUT exits carry the next RIP in EXITINFO2 on every SVM CPU. For the
// other instruction intercepts (CPUID, HLT) doppel takes NextRIP (VMCB
// 0xC8) where the CPU has NRIP save, and otherwise fetches the guest's
// instruction and decodes it with golang.org/x/arch/x86/x86asm, checking
// that it is the instruction the exit names (decode.go). QEMU TCG has
// neither NRIP save nor decode assists; Bochs's ryzen model has NRIP save.
// Without decode assists, MMIO exits (later) will decode their operands
// the same way.
//
// # ASIDs and TLB flushes
//
// Each vCPU gets its own ASID from 1 (0 is the host's). When the nested
// tables change or a harvest clears D bits, the tables' Invalidator asks
// for a flush at the next VMRUN (TLB_CONTROL 3, this ASID only, with
// FlushByAsid; else 1, everything). Like INVEPT for EPT this keeps the
// harvest exact: a translation cached with D=1 would let later writes
// through without setting D again. doppel harvests at a #VMEXIT, so no
// vCPU runs between the clear and the flush.
//
// # Measured (see also ept's doc for the same figures under EPT)
//
// Host benchmark of the NPT scan (ept BenchmarkHarvestNPT) and the cycles
// each round's harvest took in the emulators are in README.md's AMD-V
// section. Under QEMU TCG the TSC follows host time, so its cycle counts
// are wall time; under Bochs the TSC advances about once an instruction.
//
// Observed: under QEMU 7.2 TCG (-cpu max) the guest took about 370 INTR
// exits in a 50-round run (the host timer preempts it); under Bochs 2.7
// (ryzen) none: as with its VT-x, Bochs seems to recompute its interrupt
// mask only when the guest's IF changes, and the test guest runs with
// IF=0, so pending host interrupts wait for the guest's next exit of its
// own (the guest exits at every port access, so the host is never starved
// in this test).
//
// # Putting SVM behind vmm.Machine (for the Machine work)
//
// CPU (cpu.go) implements vmm.CPU, the interface vmm.Machine drives:
// Step is one VMRUN and its dispatch, Kick a tgkill that becomes an INTR
// #VMEXIT, Save/Restore a versioned blob of the VMCB guest state and the
// general registers, Close nothing (SVM has no VMCLEAR). A host test
// round-trips Save/Restore, and the AMD-V dirty-page test runs its vCPU
// through vmm.Machine with this CPU (qemu-test checks one guest entry per
// exit). PC guests run through PCCPU instead (below), which has what this
// CPU lacks: event injection, device timers, x87/SSE switching, HLT
// waiting, MSR emulation, MMIO through NPF with decoded operands, SIPI and
// the vendor-neutral saved state. vmm/pc runs the restore test under
// AMD-V as under VT-x (TestQEMUSVMLinuxRestore). Still to do on AMD-V:
// exit counts keyed by name rather than by each vendor's codes (vmm/pc
// prints both today).
//
// # The entry stub and the host's state
//
// svmrun (svm_amd64.s) runs with GIF clear from before the host's VMSAVE
// to after its VMLOAD. Between the guest's VMLOAD and the host's, the CPU
// runs doppel's code with the guest's TR, FS and GS: an interrupt or
// exception taken there would read its IST stack pointer from the guest's
// TSS and the boot layer's per-CPU data through the guest's GS base, and
// push its frame wherever those guest-virtual addresses lead in the
// host's page tables. GIF holds off interrupts and NMIs; exceptions it
// does not, so the stub writes every stack slot and regs before CLGI (the
// boot layer backs Go's memory on first touch), keeps the window to
// VMLOAD, register loads, VMRUN, VMSAVE, one stack read and VMLOAD, and
// stores the guest's registers after the host's state is back. The
// nested tables are checked at build (ept.Tables.CheckConfined) to reach
// the guest's RAM block and nothing else.
//
// # PC guests (pc.go, vmcsview.go)
//
// PCCPU runs a full PC guest for vmm/pc (chosen there when VT-x is not
// usable and SVM is). It translates each #VMEXIT to a vmm.Exit and calls
// vmm.Dispatch with a vmm.VCPU whose VMCS is vmcsView, a VMCS-field view
// of the VMCB: the CPUID view, GuestMSRs, MMIO and string-I/O emulation
// and the Injector are VT-x's code. Instruction lengths come from NextRIP
// or decoding; IOIO's from EXITINFO2. A Go timer kicks the vCPU at the
// next device-timer deadline (at most 10 ms) in place of VT-x's
// preemption timer, by tgkill's reschedule IPI (an INTR #VMEXIT that also
// lets the host run its other threads); Kick sends an NMI instead
// (vmm.KickThread), whose intercept exits at once and whose host side
// yields nothing. Status (QEMU 7.2 TCG, -cpu max): the multiboot test
// kernel passes (TestQEMUSVMTestKernel); the Debian guest reaches its
// shell and answers with 1 vCPU without ACPI tables (TestQEMUSVMLinux) and
// with 2 vCPUs and ACPI tables (TestQEMUSVMLinuxSMP, IOAPIC, LAPIC timer,
// INIT/SIPI; at poweroff the second vCPU halts with interrupts off and
// parks, as under VT-x), and survives 5 save/destroy/restore cycles
// (TestQEMUSVMLinuxRestore); the progress lines every 10 s show each
// vCPU's last exit and its LAPIC's IRR and ISR. Linux on AMD reads the TSC rate neither from CPUID 0x15 nor
// (under TCG's slow exits) from PIT calibration, so vmm/pc passes it as
// tsc_early_khz= (docs/design.md, "AMD-V").
//
// # Saved state across vendors
//
// PCCPU saves VT-x's blob (vmm.SaveVCPUState through vmcsView) and restores
// it or one from VT-x's VMXCPU; the dirty-test CPU (cpu.go) keeps its own
// "SVMC" blob of the VMCB. The blob (version 4; versions 2 and 3 still
// restore) carries CR2 and DR6, which the VMCB holds and the VMCS does not
// (VT-x saves CR2 from the registers it keeps at every exit and DR6 from the
// CPU; an older VT-x blob has DR6 0 and restores here with the vCPU's own),
// and DR0-DR3, which neither holds: both vendors' vCPUs read them from the
// CPU on the vCPU's own thread when saving, and load them before the next
// entry after a restore (vmm.GuestDebugRegs; the dirty-test CPU does not carry
// them), the x87/SSE image as an XSAVE area holding x87 and SSE only (the
// CPUID view offers no XSAVE under AMD-V, so a VT-x blob whose area holds
// AVX state or whose XCR0 enables it is refused), XCR0, the syscall MSRs,
// PAT, EFER, DEBUGCTL, SYSENTER, the MSR file (APIC base, MTRRs,
// MISC_ENABLE), a halt with interrupts off (activity state HLT) and the
// guest's TSC; the LAPIC's TSC deadline is the LAPIC's own state.
// docs/design.md ("AMD-V") lists what would
// still stop a guest saved on one vendor from resuming on the other: CPUID
// the guest has acted on, vendor-only MSRs, TSC rate without scaling, the
// VMX fixed CR bits on the way back, CR2, software-interrupt re-injection
// and nested guests.
package svm
