package board

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/doppel-ft/doppel/cpu"
)

// CPUIDFunc executes CPUID; cpu.CPUID in the kernel, a table in tests.
type CPUIDFunc func(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)

// MSRReader reads an MSR; cpu.RDMSR on bare metal, a table in tests.
type MSRReader func(msr uint32) uint64

// Features is what the boot CPU reports about itself through CPUID.
type Features struct {
	Vendor     string // "GenuineIntel", "AuthenticAMD", ...
	MaxLeaf    uint32 // highest basic CPUID leaf
	MaxExtLeaf uint32 // highest extended CPUID leaf
	Family     uint32 // display family (SDM Vol. 2A, CPUID leaf 01H, Figure 3-6)
	Model      uint32 // display model
	Stepping   uint32
	Brand      string // brand string from leaves 80000002H-80000004H

	VMX          bool // CPUID.01H:ECX.VMX[bit 5]
	SVM          bool // CPUID.80000001H:ECX.SVM[bit 2]
	Hypervisor   bool // CPUID.01H:ECX[bit 31]: we run under another hypervisor
	RDTSCP       bool // CPUID.80000001H:EDX.RDTSCP[bit 27]
	InvariantTSC bool // CPUID.80000007H:EDX[bit 8]

	// FeatureControl is IA32_FEATURE_CONTROL, read only on bare metal on a
	// CPU with VMX; nil otherwise.
	FeatureControl *FeatureControl
}

// ReadFeatures identifies the CPU through cpuid.
func ReadFeatures(cpuid CPUIDFunc) Features {
	var f Features
	var ebx, ecx, edx uint32
	f.MaxLeaf, ebx, ecx, edx = cpuid(cpu.LeafVendor, 0)
	f.Vendor = regsString(ebx, edx, ecx)
	if f.MaxLeaf >= cpu.LeafFeatures {
		eax, _, ecx, _ := cpuid(cpu.LeafFeatures, 0)
		f.Family, f.Model, f.Stepping = decodeVersion(eax)
		f.VMX = ecx&(1<<cpu.CPUID_01_ECX_VMX) != 0
		f.Hypervisor = ecx&(1<<cpu.CPUID_01_ECX_HYPERVISOR) != 0
	}
	f.MaxExtLeaf, _, _, _ = cpuid(cpu.LeafExtendedMax, 0)
	if f.MaxExtLeaf >= cpu.LeafExtendedFeatures {
		_, _, ecx, edx := cpuid(cpu.LeafExtendedFeatures, 0)
		f.SVM = ecx&(1<<cpu.CPUID_80000001_ECX_SVM) != 0
		f.RDTSCP = edx&(1<<cpu.CPUID_80000001_EDX_RDTSCP) != 0
	}
	if f.MaxExtLeaf >= cpu.LeafBrand2 {
		var b strings.Builder
		for leaf := uint32(cpu.LeafBrand0); leaf <= cpu.LeafBrand2; leaf++ {
			a, bx, c, d := cpuid(leaf, 0)
			b.WriteString(regsString(a, bx, c, d))
		}
		f.Brand = strings.Join(strings.Fields(strings.TrimRight(b.String(), "\x00")), " ")
	}
	if f.MaxExtLeaf >= cpu.LeafPowerManagement {
		_, _, _, edx := cpuid(cpu.LeafPowerManagement, 0)
		f.InvariantTSC = edx&(1<<cpu.CPUID_80000007_EDX_INVARIANT_TSC) != 0
	}
	return f
}

// decodeVersion computes the display family, model and stepping from
// CPUID.01H:EAX (SDM Vol. 2A, CPUID, "Version Information"): the extended
// family is added when the family is 0FH, and the extended model is
// prepended when the family is 06H or 0FH.
func decodeVersion(eax uint32) (family, model, stepping uint32) {
	stepping = eax & 0xf
	model = (eax >> 4) & 0xf
	family = (eax >> 8) & 0xf
	extModel := (eax >> 16) & 0xf
	extFamily := (eax >> 20) & 0xff
	if family == 0x6 || family == 0xf {
		model += extModel << 4
	}
	if family == 0xf {
		family += extFamily
	}
	return family, model, stepping
}

// regsString lays out registers as little-endian ASCII, as CPUID does for
// the vendor and brand strings.
func regsString(regs ...uint32) string {
	b := make([]byte, 0, 4*len(regs))
	for _, r := range regs {
		b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return string(b)
}

// FeatureControl is the IA32_FEATURE_CONTROL MSR (SDM Vol. 3C section 24.7):
// firmware sets the enable bits and locks it; VMXON faults unless it is
// locked with VMX enabled for the current mode.
type FeatureControl uint64

// Locked reports bit 0: the MSR is read-only until reset.
func (fc FeatureControl) Locked() bool { return fc&(1<<cpu.FEATURE_CONTROL_LOCKED) != 0 }

// VMXOutsideSMX reports bit 2: VMXON is allowed outside SMX operation.
func (fc FeatureControl) VMXOutsideSMX() bool {
	return fc&(1<<cpu.FEATURE_CONTROL_VMX_OUTSIDE_SMX) != 0
}

// VMXInsideSMX reports bit 1: VMXON is allowed inside SMX operation.
func (fc FeatureControl) VMXInsideSMX() bool {
	return fc&(1<<cpu.FEATURE_CONTROL_VMX_INSIDE_SMX) != 0
}

func (fc FeatureControl) String() string {
	var s []string
	if fc.Locked() {
		s = append(s, "locked")
	} else {
		s = append(s, "unlocked")
	}
	if fc.VMXOutsideSMX() {
		s = append(s, "VMX outside SMX enabled")
	} else {
		s = append(s, "VMX outside SMX disabled")
	}
	if fc.VMXInsideSMX() {
		s = append(s, "VMX inside SMX enabled")
	}
	return fmt.Sprintf("%#x (%s)", uint64(fc), strings.Join(s, ", "))
}

// ReadFeatureControl fills f.FeatureControl from the MSR when the CPU has
// VMX. Call it on bare metal only: RDMSR faults on a host.
func (f *Features) ReadFeatureControl(rdmsr MSRReader) {
	if !f.VMX {
		return
	}
	fc := FeatureControl(rdmsr(cpu.IA32_FEATURE_CONTROL))
	f.FeatureControl = &fc
}

// CPUCount returns the number of online CPUs and where the number came from:
// /proc/doppel/cpus on bare metal, runtime.NumCPU elsewhere.
func CPUCount() (n int, source string) {
	if cpus, err := ReadCPUs(); err == nil && len(Online(cpus)) > 0 {
		return len(Online(cpus)), CPUsPath
	}
	return runtime.NumCPU(), "runtime.NumCPU"
}

// A CPUDetail adds lines to the CPU report, printed as given; the kernel
// registers one that reports the vmm's view of the VMX capability MSRs
// (IA32_VMX_BASIC and friends, SDM Vol. 3C App. A).
type CPUDetail func(f *Features) ([]string, error)

var (
	cpuDetailsMu sync.Mutex
	cpuDetails   []namedDetail
)

type namedDetail struct {
	name string
	fn   CPUDetail
}

// RegisterCPUDetail adds a section to every later CPU report.
func RegisterCPUDetail(name string, fn CPUDetail) {
	cpuDetailsMu.Lock()
	defer cpuDetailsMu.Unlock()
	cpuDetails = append(cpuDetails, namedDetail{name, fn})
}

// WriteCPUReport prints the CPU feature report, then every registered
// detail section. A failing detail prints "<name>: error: <why>" and the
// report goes on.
func WriteCPUReport(w io.Writer, f *Features, ncpu int, ncpuSource string) error {
	yesNo := map[bool]string{true: "yes", false: "no"}
	var b strings.Builder
	fmt.Fprintf(&b, "%s family %d model %d stepping %d\n", f.Vendor, f.Family, f.Model, f.Stepping)
	if f.Brand != "" {
		fmt.Fprintf(&b, "brand: %s\n", f.Brand)
	}
	fmt.Fprintf(&b, "cpus: %d (from %s)\n", ncpu, ncpuSource)
	fmt.Fprintf(&b, "VMX: %s (CPUID.1:ECX[5]), SVM: %s (CPUID.80000001:ECX[2])\n", yesNo[f.VMX], yesNo[f.SVM])
	fmt.Fprintf(&b, "under a hypervisor: %s, RDTSCP: %s, invariant TSC: %s\n",
		yesNo[f.Hypervisor], yesNo[f.RDTSCP], yesNo[f.InvariantTSC])
	if f.FeatureControl != nil {
		fmt.Fprintf(&b, "IA32_FEATURE_CONTROL: %v\n", *f.FeatureControl)
	} else if f.VMX {
		fmt.Fprintf(&b, "IA32_FEATURE_CONTROL: not read (not on bare metal)\n")
	}
	cpuDetailsMu.Lock()
	details := append([]namedDetail(nil), cpuDetails...)
	cpuDetailsMu.Unlock()
	for _, d := range details {
		lines, err := d.fn(f)
		if err != nil {
			fmt.Fprintf(&b, "%s: error: %v\n", d.name, err)
			continue
		}
		for _, l := range lines {
			fmt.Fprintf(&b, "%s\n", l)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
