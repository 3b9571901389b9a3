package svm

import (
	"fmt"
	"runtime"
)

// Where the vCPUs run, and why not on CPU 0 under QEMU TCG.
//
// QEMU's TCG (7.2 to today's master, target/i386/tcg/system/fpu_helper.c)
// emulates the chipset's IGNNE# line as a bit of the first CPU's hflags2.
// Every x87 state load that leaves FSW.ES clear (FLDENV, FRSTOR, FXRSTOR,
// and XRSTOR with the x87 component) calls cpu_clear_ignne, which clears
// that bit with a plain read-modify-write of CPU 0's hflags2, from the
// thread of whichever vCPU ran the instruction. Under multi-threaded TCG
// that store can land on top of CPU 0's own update of the same word and
// undo it. hflags2 also holds CPU 0's SVM state: the nested-paging bit
// VMRUN sets and #VMEXIT clears, GIF, the virtual-interrupt bits. When
// the stale word wins on CPU 0:
//   - after VMRUN, the guest runs without nested paging: its next page
//     walk reads its CR3 as a host-physical address, finds zeros, and the
//     guest triple-faults (a SHUTDOWN #VMEXIT; CR2 on its IDT's #DF gate);
//   - after #VMEXIT, doppel's own page walks go through the guest's nested
//     tables, its next instruction fetch faults and so does the IDT read:
//     the machine triple-faults.
// Both were issue 11's two faces. Found with an instrumented QEMU 7.2
// that logged hflags2 at the failing walk: the nested-paging bit was
// clear in guest mode in the one case and set in host mode in the other.
// With cpu_clear_ignne made to write only when the bit is set, 12 of 12
// Linux boots passed where 3 of 8 had failed.
//
// doppel cannot stop other CPUs, or the guest's own kernel, from
// restoring x87 state. It can keep CPU 0 out of SVM: a CPU 0 that never
// runs VMRUN, CLGI or STGI and takes no NMI keeps an hflags2 that never
// changes, so a stale write-back of it changes nothing. Under QEMU TCG the
// vCPUs therefore run on CPUs 1..n-1 (doppel.svm.cpu0).

// CPU0 policies (the doppel.svm.cpu0 boot flag).
const (
	CPU0Auto  = "auto"  // avoid CPU 0 under QEMU TCG, use it elsewhere
	CPU0Avoid = "avoid" // never run a vCPU on CPU 0 (if there is another CPU)
	CPU0Use   = "use"   // vCPU i runs on CPU i mod n
)

// SignatureQEMUTCG is what QEMU's TCG reports in CPUID leaf 0x40000000
// (EBX, ECX, EDX), unless started with tcg-cpuid=off.
const SignatureQEMUTCG = "TCGTCGTCGTCG"

// HypervisorSignature returns the 12-byte vendor signature of CPUID leaf
// 0x40000000 (the hypervisor leaf). On hardware without a hypervisor it
// is whatever that leaf returns, which is never QEMU's.
func HypervisorSignature(cpuid func(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)) string {
	_, b, c, d := cpuid(0x4000_0000, 0)
	var s [12]byte
	for i, r := range []uint32{b, c, d} {
		s[4*i], s[4*i+1], s[4*i+2], s[4*i+3] = byte(r), byte(r>>8), byte(r>>16), byte(r>>24)
	}
	return string(s[:])
}

// Placement says which host CPUs run a guest's vCPUs.
type Placement struct {
	// AvoidCPU0 keeps vCPUs off CPU 0 (there must be another CPU).
	AvoidCPU0 bool
	// Reason says why, for the log.
	Reason string
}

// PlaceVCPUs decides the placement under policy (CPU0Auto, CPU0Avoid or
// CPU0Use) on a host of ncpu CPUs whose CPUID is cpuid.
func PlaceVCPUs(policy string, ncpu int, cpuid func(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)) (Placement, error) {
	switch policy {
	case CPU0Use:
		return Placement{Reason: "doppel.svm.cpu0=use: vCPU i runs on CPU i mod n"}, nil
	case CPU0Avoid, CPU0Auto:
	default:
		return Placement{}, fmt.Errorf("svm: doppel.svm.cpu0=%q: want %s, %s or %s", policy, CPU0Auto, CPU0Avoid, CPU0Use)
	}
	if ncpu < 2 {
		return Placement{Reason: "one CPU: the vCPUs run on CPU 0"}, nil
	}
	if policy == CPU0Avoid {
		return Placement{AvoidCPU0: true, Reason: "doppel.svm.cpu0=avoid: vCPUs run on CPUs 1 and up"}, nil
	}
	if HypervisorSignature(cpuid) != SignatureQEMUTCG {
		return Placement{Reason: "vCPU i runs on CPU i mod n"}, nil
	}
	return Placement{AvoidCPU0: true, Reason: "QEMU TCG: vCPUs run on CPUs 1 and up, never CPU 0, whose SVM state QEMU's x87 restores race with (doppel.svm.cpu0=use to override)"}, nil
}

// HostCPUs is how many CPUs the placement offers the vCPUs.
func (p Placement) HostCPUs(ncpu int) int {
	if p.AvoidCPU0 && ncpu > 1 {
		return ncpu - 1
	}
	return ncpu
}

// CPU returns the host CPU of vCPU i on a host of ncpu CPUs.
func (p Placement) CPU(i, ncpu int) int {
	if p.AvoidCPU0 && ncpu > 1 {
		return 1 + i%(ncpu-1)
	}
	return i % ncpu
}

// HostPlacement is PlaceVCPUs on this machine (runtime.NumCPU and the
// CPUID instruction).
func HostPlacement(policy string, cpuid func(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)) (Placement, int, error) {
	n := runtime.NumCPU()
	p, err := PlaceVCPUs(policy, n, cpuid)
	return p, n, err
}
