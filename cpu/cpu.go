package cpu

// CPUID executes CPUID with EAX=leaf and ECX=subleaf and returns the four
// result registers. It works in any ring.
func CPUID(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32) {
	return cpuid(leaf, subleaf)
}

// RDTSC returns the time-stamp counter of the CPU the thread runs on. It
// works in any ring unless CR4.TSD is set.
func RDTSC() uint64 { return rdtsc() }

// RDTSCP returns the time-stamp counter and IA32_TSC_AUX, which Linux (and
// the boot layer, if it sets it) loads with the CPU's index. It works in any
// ring when CPUID.80000001H:EDX.RDTSCP[bit 27] is set.
func RDTSCP() (tsc uint64, aux uint32) { return rdtscp() }

// RDMSR reads a model-specific register. Ring 0 only: it faults on a host.
func RDMSR(msr uint32) uint64 { return rdmsr(msr) }

// WRMSR writes a model-specific register. Ring 0 only: it faults on a host.
func WRMSR(msr uint32, value uint64) { wrmsr(msr, value) }

// ReadCR0 returns CR0. Ring 0 only: it faults on a host.
func ReadCR0() uint64 { return readCR0() }

// ReadCR3 returns CR3 (the page-table base of the current address space).
// Ring 0 only: it faults on a host.
func ReadCR3() uint64 { return readCR3() }

// ReadCR4 returns CR4. Ring 0 only: it faults on a host.
func ReadCR4() uint64 { return readCR4() }

// WriteCR0 sets CR0. Ring 0 only: it faults on a host.
func WriteCR0(v uint64) { writeCR0(v) }

// WriteCR4 sets CR4. Ring 0 only: it faults on a host.
func WriteCR4(v uint64) { writeCR4(v) }

// DebugRegs are the debug registers a hypervisor must carry for its guest
// itself (SDM Vol. 3B 18.2): the breakpoint addresses DR0-DR3 and the
// debug status DR6. Neither VT-x's VMCS nor AMD-V's VMCB holds DR0-DR3,
// and the VMCS does not hold DR6: a guest's values stay in the CPU's own
// registers across VM exits. DR7, which enables the breakpoints, is in
// both.
type DebugRegs struct {
	DR  [4]uint64
	DR6 uint64
}

// ResetDR6 is DR6 after RESET or INIT (SDM Vol. 3A 10.1.1 table 10-1,
// AMD APM Vol. 2 14.1.3); DR0-DR3 are zero then.
const ResetDR6 = 0xFFFF_0FF0

// ReadDebugRegs reads DR0-DR3 and DR6 of the CPU the thread runs on.
// Ring 0 only: it faults on a host.
func ReadDebugRegs(d *DebugRegs) { readDebugRegs(d) }

// WriteDebugRegs loads DR0-DR3 and DR6. DR6 bits 63:32 must be zero (a 1
// there is a #GP). Ring 0 only: it faults on a host.
func WriteDebugRegs(d *DebugRegs) { writeDebugRegs(d) }

// HasRDTSCP reports whether the CPU implements RDTSCP
// (CPUID.80000001H:EDX[bit 27]).
func HasRDTSCP() bool {
	maxExt, _, _, _ := cpuid(LeafExtendedMax, 0)
	if maxExt < LeafExtendedFeatures {
		return false
	}
	_, _, _, edx := cpuid(LeafExtendedFeatures, 0)
	return edx&(1<<CPUID_80000001_EDX_RDTSCP) != 0
}

// InitialAPICID returns the initial APIC ID of the CPU the calling thread runs
// on, from CPUID.01H:EBX[31:24] (SDM Vol. 2A, CPUID leaf 01H). Pin the
// thread first, or the answer may be stale by the time it returns.
func InitialAPICID() uint8 {
	_, ebx, _, _ := cpuid(LeafFeatures, 0)
	return uint8(ebx >> 24)
}

// APICID returns the APIC ID of the CPU the calling thread runs on: the
// x2APIC ID from CPUID.0BH:EDX when the CPU has leaf 0BH, else the 8-bit
// initial APIC ID (SDM Vol. 3A section 10.4.6 and Vol. 2A, CPUID leaf 0BH).
// Pin the thread first.
func APICID() uint32 {
	maxLeaf, _, _, _ := cpuid(LeafVendor, 0)
	if maxLeaf >= LeafTopology {
		if _, ebx, _, edx := cpuid(LeafTopology, 0); ebx&0xffff != 0 {
			return edx
		}
	}
	return uint32(InitialAPICID())
}
