// Package vmm runs guests under Intel VT-x: it probes the VMX capabilities,
// builds the VMCS, enters the guest and dispatches its VM exits.
//
// References, Intel SDM Vol. 3C:
//   - ch. 24 "Introduction to Virtual Machine Extensions" (VMXON, the
//     VMXON region, IA32_FEATURE_CONTROL);
//   - ch. 25 "Virtual Machine Control Structures": guest and host state
//     areas (25.4, 25.5), VM-execution controls (25.6), VM-exit controls
//     (25.7), VM-entry controls (25.8), exit information (25.9);
//   - ch. 26-27 VM entries and VM exits; 28.2.1 exit qualifications;
//   - ch. 31 "VMX Instruction Reference", 31.4 VM-instruction error numbers;
//   - App. A "VMX Capability Reporting Facility" (the IA32_VMX_* MSRs);
//   - App. B "Field Encoding in VMCS"; App. C "VMX Basic Exit Reasons".
//
// The package is split along the line the design draws: everything here
// except the VMX instruction stubs (vmx_amd64.s) and the code that drives
// them is pure Go and tested on a Linux host: field encodings, control bits
// and their adjustment against the capability MSRs, the capability report,
// exit-qualification decoders, the exit dispatch table and the doppel test
// port protocol. Virtual devices live in their own packages (vmm/devices/...).
//
// # Test guest start state
//
// The test guest (testguest/) is a flat binary loaded at guest-physical
// GuestLoadAddr and entered in 32-bit protected mode with paging off, which
// needs the "unrestricted guest" secondary control: CS a flat 32-bit code
// segment (base 0, limit 4 GiB, selector 0x08), DS/ES/SS/FS/GS flat data
// (selector 0x10), CR0 = PE|ET|NE, CR4 = VMXE is hidden by the CR4 read
// shadow, RFLAGS = 0x2, RIP = GuestLoadAddr, ESP = GuestLoadAddr (the stack
// grows down below the image), EBX = the guest's RAM size in bytes.
// Interrupts are off, except in the spin phase of the VM-exit test. The
// guest talks to doppel only through I/O ports: COM1 (0x3F8-0x3FF, a
// 16550) and the doppel test port (vmm/dirtytest, 0xE00).
//
// # Hardware side
//
// vmx_amd64.s holds the BYTE-encoded VMX instructions and the entry/exit
// stub; hw.go, vmcs_setup.go and run.go drive them: Enable (VMXON),
// NewVCPU (VMCLEAR, VMPTRLD, controls adjusted against the capability MSRs,
// host state of the current CPU, the guest's start state) and HWVCPU.Run.
// All of it runs on one thread pinned with PinThread. The stub runs with
// interrupts off from the HOST_RSP write to the VM exit and turns them on
// again before returning, so the host timer (an external-interrupt exit)
// keeps slicing threads: "acknowledge interrupt on exit" is off, so the
// interrupt stays pending in the local APIC and the host IDT takes it at
// that STI (SDM Vol. 3C 25.7.1, 28.2.2).
//
// Observed under Bochs 2.7 (corei7_skylake_x): a guest running with
// RFLAGS.IF=0 never gets an external-interrupt exit, though the SDM (26.2,
// 25.6.1) makes external-interrupt exiting independent of IF; pending
// interrupts then wait for the guest's next exit of its own. A 100M-
// instruction spin with IF=0 saw 0 such exits and the host thread pinned
// to the vCPU's CPU ran once; with IF=1 it saw 826 exits and 514 host
// ticks. Bochs apparently recomputes its interrupt mask only when IF
// changes. The test guest therefore makes its asserted spin with IF=1;
// doppel injects nothing, so the guest never takes an interrupt.
//
// The same guest does exit on an NMI (NMI exiting), which is how Kick
// reaches it. Observed under Bochs 2.7 too: after an NMI's exit the saved
// guest interruptibility state has "blocking by NMI" set although the
// guest was not blocked at the entry, and with NMI exiting that blocking
// holds in VMX non-root, so every later NMI waited for the preemption
// timer; VMXCPU puts back the blocking the guest had at the entry.
//
// Where the CPU has it, the VMX-preemption timer (PinActivatePreemption-
// Timer, reloaded at every entry) bounds the time in non-root to
// PreemptionSliceTSC whatever the guest does. Under Bochs the IF=0 spin
// then saw 11 preemption-timer exits and 1 external-interrupt exit in 100M
// cycles (the host got its CPU back, but the pinned host thread still ran
// 1 to 4 times in 11 chances: a pending wakeup did not always get it
// scheduled at those exits).
//
// A guest that triple-faults stops with a *TripleFaultError (its RIP); the
// host goes on. A failed VM entry is ErrEntryFailed with the VM-instruction
// error number and its meaning (VMfailValid) or the exit reason and decoded
// qualification (an entry-failure exit). The VM-exit test
// (doppel.vmexittest=1, vmm/dirtytest) proves both, the guest's CPUID view
// and the external-interrupt path under Bochs.
//
// # Machine
//
// A Machine (machine.go) is one guest: its RAM (GuestMemory, guest-physical
// 0 to len), a port bus and an MMIO bus (overlap-checked), named devices,
// and one goroutine per vCPU locked to its pinned host thread. Between two
// guest entries every vCPU passes a run-state gate (one atomic load while
// running): Pause sets Pausing, kicks every vCPU and returns when all are
// parked at an instruction boundary (after an exit, before the next entry);
// Resume lets them go; Stop ends them. Save, on a paused machine, returns
// a Snapshot of every vCPU, every device and all memory; Restore loads one
// into a machine that has not started (its vCPUs load their part on their
// own threads). A vCPU that halts with interrupts disabled (Linux's
// stop_this_cpu on the other CPUs at power-off) parks: its Step returns
// ActionPark until an NMI or INIT wakes it, the others run on, and the
// machine stops with ErrAllHalted once every live vCPU is parked with no
// wake-up on its way (HaltWaker); an application processor still waiting
// for its SIPI counts as parked. Pause kicks again every kickRetry (1 ms)
// the vCPUs that have not parked: a vendor's kick can miss one that
// enters the guest just after it. The vendor side is the CPU interface, so
// the run-state logic is tested on the host with fake vCPUs
// (machine_test.go, machine_park_test.go, machine_kick_test.go, -race).
//
// # Full guests on VT-x
//
// VMXCPU (vmxcpu.go) is the CPU of a full guest: MSR bitmap (FS/GS base,
// SYSENTER and the syscall MSRs pass through; the rest exits to GuestMSRs,
// whose misses are #GP), the syscall MSRs loaded at entry and stored at
// exit through one MSR area with the host's restored at exit, TSC
// offsetting (the guest clock is the TSC: TSCClock), VPID, RDTSCP and
// INVPCID when the CPU has the controls (CPUIDView hides them otherwise),
// CR8 and MWAIT/MONITOR exiting, the guest's x87/SSE/AVX state switched
// inside the entry stub (xsave.go: XRSTOR/XSAVE of a standard-format area
// under an XCR0 of every component offered, the guest's XCR0 loaded for
// the guest, XSETBV always exiting and checked by ValidXCR0), interrupt injection before every entry with interrupt-
// window exiting (Injector), HLT that sleeps until a timer or interrupt is
// due, MMIO by decoding the faulting instruction with x86asm (mmio.go),
// string I/O (stringio.go), an application processor that waits for
// INIT/SIPI, and Save/Restore of the whole vCPU state (gueststate.go).
// Kick sends a running vCPU's CPU an NMI (KickThread, the boot layer's
// PR_DOPPEL_KICK): NMI exiting leaves the guest whatever its RFLAGS.IF,
// where an IPI does not under Bochs with a guest at IF=0 (above); Step
// looks at the kick once more just before the entry, and Machine.Pause
// kicks again every millisecond until every vCPU parked, since an NMI that
// lands in the host just before the entry is lost. The preemption timer
// bounds the rest. The guest sees CPUIDView's CPUID: its own topology, the
// hypervisor and timing leaves, and a TSC rate in leaf 0x15 that Linux's
// 32-bit arithmetic reads right (CrystalFor). vmm/pc wires a PC around it.
//
// # Extended state (XSAVE)
//
// The host kernel runs with CR4.OSXSAVE and XCR0 = x87|SSE|AVX, plus the
// AVX-512 components where present (boot/layer/cpu.c), so the Go runtime
// uses AVX2 and AVX-512 itself. Go's ABI treats every vector register as
// clobbered by a call to assembly, so the entry stub keeps only what the
// runtime relies on across it: the x87 control word and MXCSR (the host's
// FXSAVE image) and clean upper state (VZEROUPPER) after the exit. A vCPU offers
// its guest the components SwitchableXCR0 finds on the host: x87, SSE,
// AVX and AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM together), never MPX, PKRU,
// AMX or supervisor state; XSAVES stays hidden (its control is off). The
// CPUID view shows XSAVE, AVX/AVX2/FMA/F16C and the AVX-512 family only
// with their state switched, OSXSAVE as the guest's CR4 has it, leaf 0xD
// with the standard sizes (subleaf 0) and the compacted size (subleaf 1
// EBX, which Linux checks when it uses XSAVEC). XSAVEC is hidden unless
// CPUIDConfig.XSAVEC (see there for why). With no XSAVE on the host,
// or for a CPUID view whose XCR0 is 0 (the FT guest's), the stub switches
// the area's legacy region with FXSAVE/FXRSTOR and XSAVE and AVX stay
// hidden. The saved vCPU state (version 3) carries the area, checked
// before it is loaded: an XRSTOR fault would be the host's.
//
// Not yet done: AVX for doppel's own Go code (a per-thread XSAVE switch
// in the boot layer was tried once and withdrawn after Go runtimes under
// it died with heap corruption in 2 of 4 QEMU self-test boots); guest
// XSAVE under AMD-V (vmm/svm still switches FXSAVE and hides XSAVE);
// posted interrupts and APIC virtualisation (every APIC access exits);
// NMI injection.
package vmm
