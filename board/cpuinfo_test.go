package board

import (
	"errors"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/cpu"
)

// cpuidTable fakes CPUID: leaves absent from the table return zeros.
type cpuidTable map[uint32][4]uint32

func (c cpuidTable) cpuid(leaf, _ uint32) (a, b, cx, d uint32) {
	r := c[leaf]
	return r[0], r[1], r[2], r[3]
}

// withBrand returns the table plus leaves 80000002H-80000004H spelling brand.
func (c cpuidTable) withBrand(brand string) cpuidTable {
	b := make([]byte, 48)
	copy(b, brand)
	le := func(p []byte) uint32 { return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24 }
	for i := 0; i < 3; i++ {
		p := b[16*i:]
		c[cpu.LeafBrand0+uint32(i)] = [4]uint32{le(p), le(p[4:]), le(p[8:]), le(p[12:])}
	}
	return c
}

var (
	intelVendor = [4]uint32{0x16, 0x756e6547, 0x6c65746e, 0x49656e69} // "Genu" "ntel" "ineI"
	amdVendor   = [4]uint32{0x10, 0x68747541, 0x444d4163, 0x69746e65} // "Auth" "cAMD" "enti"
)

func TestReadFeatures(t *testing.T) {
	tests := []struct {
		name  string
		table cpuidTable
		want  Features
	}{
		{
			name: "Xeon Gold 6130 (Skylake-SP) with VMX",
			table: cpuidTable{
				0x0:        intelVendor,
				0x1:        {0x00050654, 0, 1 << 5, 0},
				0x80000000: {0x80000008, 0, 0, 0},
				0x80000001: {0, 0, 0, 1 << 27},
				0x80000007: {0, 0, 0, 1 << 8},
			}.withBrand("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"),
			want: Features{Vendor: "GenuineIntel", MaxLeaf: 0x16, MaxExtLeaf: 0x80000008,
				Family: 6, Model: 85, Stepping: 4, Brand: "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz",
				VMX: true, RDTSCP: true, InvariantTSC: true},
		},
		{
			name: "EPYC 7742 (family 17h from the extended family) with SVM",
			table: cpuidTable{
				0x0:        amdVendor,
				0x1:        {0x00830f10, 0, 0, 0},
				0x80000000: {0x80000020, 0, 0, 0},
				0x80000001: {0, 0, 1 << 2, 1 << 27},
			}.withBrand("AMD EPYC 7742 64-Core Processor                "),
			want: Features{Vendor: "AuthenticAMD", MaxLeaf: 0x10, MaxExtLeaf: 0x80000020,
				Family: 0x17, Model: 0x31, Stepping: 0, Brand: "AMD EPYC 7742 64-Core Processor",
				SVM: true, RDTSCP: true},
		},
		{
			name: "QEMU TCG qemu64 guest: family 15 takes the extended model",
			table: cpuidTable{
				0x0:        amdVendor,
				0x1:        {0x00060fb1, 0, 1 << 31, 0},
				0x80000000: {0x80000004, 0, 0, 0},
				0x80000001: {0, 0, 1 << 2, 0},
			}.withBrand("QEMU Virtual CPU version 2.5+"),
			want: Features{Vendor: "AuthenticAMD", MaxLeaf: 0x10, MaxExtLeaf: 0x80000004,
				Family: 15, Model: 107, Stepping: 1, Brand: "QEMU Virtual CPU version 2.5+",
				SVM: true, Hypervisor: true},
		},
		{
			name:  "ancient CPU without extended leaves",
			table: cpuidTable{0x0: {0x1, 0x756e6547, 0x6c65746e, 0x49656e69}, 0x1: {0x00000633, 0, 0, 0}},
			want:  Features{Vendor: "GenuineIntel", MaxLeaf: 1, Family: 6, Model: 3, Stepping: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReadFeatures(tt.table.cpuid); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestFeatureControl(t *testing.T) {
	tests := []struct {
		msr                    uint64
		locked, outside, insde bool
		str                    string
	}{
		{0x0, false, false, false, "0x0 (unlocked, VMX outside SMX disabled)"},
		{0x1, true, false, false, "0x1 (locked, VMX outside SMX disabled)"},
		{0x5, true, true, false, "0x5 (locked, VMX outside SMX enabled)"},
		{0x7, true, true, true, "0x7 (locked, VMX outside SMX enabled, VMX inside SMX enabled)"},
	}
	for _, tt := range tests {
		f := Features{VMX: true}
		f.ReadFeatureControl(func(msr uint32) uint64 {
			if msr != cpu.IA32_FEATURE_CONTROL {
				t.Fatalf("read MSR %#x, want IA32_FEATURE_CONTROL", msr)
			}
			return tt.msr
		})
		fc := *f.FeatureControl
		if fc.Locked() != tt.locked || fc.VMXOutsideSMX() != tt.outside || fc.VMXInsideSMX() != tt.insde || fc.String() != tt.str {
			t.Errorf("%#x: locked %v outside %v inside %v %q", tt.msr, fc.Locked(), fc.VMXOutsideSMX(), fc.VMXInsideSMX(), fc)
		}
	}
	f := Features{VMX: false}
	f.ReadFeatureControl(func(uint32) uint64 { t.Fatal("read the MSR on a CPU without VMX"); return 0 })
}

func TestCPUReport(t *testing.T) {
	fc := FeatureControl(0x5)
	f := Features{Vendor: "GenuineIntel", Family: 6, Model: 85, Stepping: 4, Brand: "Xeon", VMX: true, FeatureControl: &fc}
	RegisterCPUDetail("vmx-test", func(*Features) ([]string, error) { return []string{"vmx: revision 4"}, nil })
	RegisterCPUDetail("broken-test", func(*Features) ([]string, error) { return nil, errors.New("no MSR") })
	t.Cleanup(func() { cpuDetails = nil })
	var b strings.Builder
	if err := WriteCPUReport(&b, &f, 2, CPUsPath); err != nil {
		t.Fatal(err)
	}
	want := "GenuineIntel family 6 model 85 stepping 4\n" +
		"brand: Xeon\n" +
		"cpus: 2 (from /proc/doppel/cpus)\n" +
		"VMX: yes (CPUID.1:ECX[5]), SVM: no (CPUID.80000001:ECX[2])\n" +
		"under a hypervisor: no, RDTSCP: no, invariant TSC: no\n" +
		"IA32_FEATURE_CONTROL: 0x5 (locked, VMX outside SMX enabled)\n" +
		"vmx: revision 4\n" +
		"broken-test: error: no MSR\n"
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestReadFeaturesThisCPU(t *testing.T) {
	f := ReadFeatures(cpu.CPUID)
	if f.Vendor == "" || f.Family == 0 {
		t.Fatalf("this CPU: %+v", f)
	}
	t.Logf("%+v", f)
}
