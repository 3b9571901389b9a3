package vmm

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

type cpuidKey struct{ leaf, sub uint32 }

// loadCPUIDDump reads a dump of "leaf subleaf eax ebx ecx edx" lines (hex)
// and returns a CPUID function answering from it like the CPU did.
func loadCPUIDDump(t *testing.T, path string) func(leaf, sub uint32) (a, b, c, d uint32) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dump := map[cpuidKey][4]uint32{}
	subleaves := map[uint32]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		var v [6]uint32
		for i, w := range strings.Fields(line) {
			n, err := strconv.ParseUint(w, 16, 32)
			if err != nil {
				t.Fatalf("%s: %q: %v", path, line, err)
			}
			v[i] = uint32(n)
		}
		if v[1] != 0 {
			subleaves[v[0]] = true
		}
		dump[cpuidKey{v[0], v[1]}] = [4]uint32{v[2], v[3], v[4], v[5]}
	}
	return func(leaf, sub uint32) (a, b, c, d uint32) {
		if !subleaves[leaf] {
			sub = 0
		}
		r := dump[cpuidKey{leaf, sub}]
		return r[0], r[1], r[2], r[3]
	}
}

func TestCPUIDViewFromHostDump(t *testing.T) {
	host := loadCPUIDDump(t, "testdata/cpuid-amd-epyc.txt")
	base := CPUIDConfig{Host: host, CPUs: 2, TSCHz: 100_000_000, CrystalHz: 25_000_000, XCR0: XCR0Switchable & 0xE7}
	v := NewCPUIDView(base)
	q := func(v *CPUIDView, apic uint32, cr4, xcr0 uint64, leaf, sub uint32) [4]uint32 {
		a, b, c, d := v.Query(apic, cr4, xcr0, leaf, sub)
		return [4]uint32{a, b, c, d}
	}
	has := func(r uint32, n uint) bool { return r&(1<<n) != 0 }

	l0 := q(v, 0, 0, 3, 0, 0)
	if l0[0] != guestMaxBasic {
		t.Errorf("leaf 0 max = %#x, want %#x", l0[0], guestMaxBasic)
	}
	if _, hb, hc, hd := host(0, 0); l0[1] != hb || l0[2] != hc || l0[3] != hd {
		t.Errorf("vendor changed: %x", l0[1:])
	}

	for apic := uint32(0); apic < 2; apic++ {
		l1 := q(v, apic, 0, 3, 1, 0)
		if got := l1[1] >> 24; got != apic {
			t.Errorf("leaf 1 APIC ID = %d, want %d", got, apic)
		}
		if got := l1[1] >> 16 & 0xFF; got != 2 {
			t.Errorf("leaf 1 logical count = %d, want 2", got)
		}
		if !has(l1[3], CPUID01_EDX_HTT) {
			t.Error("HTT clear with 2 vCPUs")
		}
		if got := q(v, apic, 0, 3, 0xB, 0)[3]; got != apic {
			t.Errorf("leaf 0xB x2APIC ID = %d, want %d", got, apic)
		}
	}
	l1 := q(v, 0, 0, 3, 1, 0)
	for _, tc := range []struct {
		name string
		bit  uint
		want bool
	}{
		{"hypervisor", CPUID01_ECX_Hypervisor, true},
		{"VMX", CPUID01_ECX_VMX, false},
		{"MONITOR", CPUID01_ECX_MONITOR, false},
		{"x2APIC", CPUID01_ECX_X2APIC, false},
		{"PDCM", CPUID01_ECX_PDCM, false},
		{"TSC deadline", CPUID01_ECX_TSCDeadine, false},
		{"XSAVE", CPUID01_ECX_XSAVE, true},
		{"AVX", CPUID01_ECX_AVX, true},
		{"OSXSAVE with CR4.OSXSAVE clear", CPUID01_ECX_OSXSAVE, false},
	} {
		if has(l1[2], tc.bit) != tc.want {
			t.Errorf("leaf 1 ECX %s (bit %d) = %v, want %v", tc.name, tc.bit, !tc.want, tc.want)
		}
	}
	if !has(q(v, 0, CR4_OSXSAVE, 3, 1, 0)[2], CPUID01_ECX_OSXSAVE) {
		t.Error("OSXSAVE clear though the guest set CR4.OSXSAVE")
	}
	if has(l1[3], CPUID01_EDX_MCE) || has(l1[3], CPUID01_EDX_MCA) {
		t.Error("machine check shown")
	}

	// Power management and performance monitoring leaves are empty
	// (Linux loops on APERF/MPERF if leaf 6 offers them; leaf 6 has ARAT
	// alone, checked below).
	for _, leaf := range []uint32{5, 0xA, 0x14, 0x17, 0x1F, 0x4000_0001, 0x8000_000A, 0x8000_001F} {
		if r := q(v, 0, 0, 3, leaf, 0); r != [4]uint32{} {
			t.Errorf("leaf %#x = %x, want zeros", leaf, r)
		}
	}

	// The host is AMD: SVM is hidden; RDTSCP follows the control.
	e1 := q(v, 0, 0, 3, 0x8000_0001, 0)
	if has(e1[2], CPUID80000001_ECX_SVM) {
		t.Error("SVM shown")
	}
	if has(e1[3], CPUID80000001_EDX_RDTSCP) {
		t.Error("RDTSCP shown without the enable-RDTSCP control")
	}
	if !has(e1[3], 29) || !has(e1[3], 20) || !has(e1[3], 11) {
		t.Errorf("LM, NX or SYSCALL hidden: %#x", e1[3])
	}
	withRDTSCP := base
	withRDTSCP.RDTSCP, withRDTSCP.INVPCID = true, true
	v2 := NewCPUIDView(withRDTSCP)
	if !has(q(v2, 0, 0, 3, 0x8000_0001, 0)[3], CPUID80000001_EDX_RDTSCP) {
		t.Error("RDTSCP hidden with the control")
	}
	if l6 := q(v, 0, 0, 3, 6, 0); l6 != [4]uint32{bit(CPUID06_EAX_ARAT), 0, 0, 0} {
		t.Errorf("leaf 6 = %#x, want ARAT alone", l6)
	}
	if !has(q(v, 0, 0, 3, 0x8000_0007, 0)[3], CPUID80000007_EDX_InvariantTSC) {
		t.Error("invariant TSC not shown")
	}
	l7 := q(v, 0, 0, 3, 7, 0)
	if has(l7[1], CPUID07_EBX_INVPCID) {
		t.Error("INVPCID shown without the control")
	}
	if _, hb, _, _ := host(7, 0); has(hb, CPUID07_EBX_INVPCID) && !has(q(v2, 0, 0, 3, 7, 0)[1], CPUID07_EBX_INVPCID) {
		t.Error("INVPCID hidden with the control")
	}
	if has(l7[1], CPUID07_EBX_TSCADJ) {
		t.Error("IA32_TSC_ADJUST shown: the guest's RDMSR 0x3B would #GP (Linux warns at boot)")
	}
	if has(l7[2], CPUID07_ECX_RDPID) || has(l7[2], CPUID07_ECX_LA57) || has(l7[2], CPUID07_ECX_PKU) {
		t.Errorf("RDPID, LA57 or PKU shown: %#x", l7[2])
	}
	if l7[1]&(1<<5) == 0 || l7[1]&(1<<16) == 0 {
		t.Errorf("AVX2 or AVX-512F hidden though switched: %#x", l7[1])
	}
	if r := q(v, 0, 0, 3, 7, 1); r != [4]uint32{} {
		t.Errorf("leaf 7.1 = %x, want zeros", r)
	}

	// Hypervisor leaves.
	h := q(v, 0, 0, 3, CPUIDLeafHypervisor, 0)
	sig := string([]byte{byte(h[1]), byte(h[1] >> 8), byte(h[1] >> 16), byte(h[1] >> 24),
		byte(h[2]), byte(h[2] >> 8), byte(h[2] >> 16), byte(h[2] >> 24),
		byte(h[3]), byte(h[3] >> 8), byte(h[3] >> 16), byte(h[3] >> 24)})
	if sig != HypervisorSignature || h[0] != CPUIDLeafTiming {
		t.Errorf("hypervisor leaf = %q max %#x", sig, h[0])
	}
	if r := q(v, 0, 0, 3, CPUIDLeafTiming, 0); r[0] != 100_000 || r[1] != 25_000 {
		t.Errorf("timing leaf = %d kHz TSC, %d kHz bus", r[0], r[1])
	}

	// Topology. The AMD host has no leaf 4: give it an Intel one (an L1
	// data cache shared by 2 threads of 8 cores).
	for _, n := range []int{1, 2, 3, 4, 8} {
		c := base
		c.CPUs = n
		c.Host = func(leaf, sub uint32) (a, b, cc, d uint32) {
			if leaf == 4 && sub == 0 {
				return 0x1C00_4121, 0x01C0_003F, 0x3F, 0
			}
			return host(leaf, sub)
		}
		vt := NewCPUIDView(c)
		s1 := q(vt, 0, 0, 3, 0xB, 1)
		if s1[1] != uint32(n) || 1<<s1[0] < n || (n > 1 && 1<<(s1[0]-1) >= n) || s1[2]>>8 != 2 {
			t.Errorf("%d vCPUs: leaf 0xB.1 = %x", n, s1)
		}
		if s2 := q(vt, 0, 0, 3, 0xB, 2); s2[1] != 0 || s2[2]>>8 != 0 {
			t.Errorf("%d vCPUs: leaf 0xB.2 = %x, want an invalid level", n, s2)
		}
		if l4 := q(vt, 0, 0, 3, 4, 0); l4[0]>>26 != uint32(n-1) {
			t.Errorf("%d vCPUs: leaf 4 cores = %d", n, l4[0]>>26+1)
		}
	}
}

func TestCPUIDViewXSAVE(t *testing.T) {
	host := loadCPUIDDump(t, "testdata/cpuid-amd-epyc.txt")
	for _, tc := range []struct {
		name      string
		mask      uint64 // CPUIDConfig.XCR0
		xcr0      uint64 // the guest's
		wantEAX   uint32
		wantEBX   uint32 // size for the guest's XCR0
		wantECX   uint32 // size for everything offered
		xsave     bool
		avx, avx2 bool
	}{
		{"none", 0, 1, 0, 0, 0, false, false, false},
		{"sse", XCR0_X87 | XCR0_SSE, 3, 3, 576, 576, true, false, false},
		{"avx, guest sse", XCR0_X87 | XCR0_SSE | XCR0_AVX, 3, 7, 576, 832, true, true, true},
		{"avx, guest avx", XCR0_X87 | XCR0_SSE | XCR0_AVX, 7, 7, 832, 832, true, true, true},
		{"avx512", 0xE7, 0xE7, 0xE7, 0x980, 0x980, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewCPUIDView(CPUIDConfig{Host: host, CPUs: 1, XCR0: tc.mask})
			a, b, c, d := v.Query(0, CR4_OSXSAVE, tc.xcr0, 0xD, 0)
			if a != tc.wantEAX || b != tc.wantEBX || c != tc.wantECX || d != 0 {
				t.Errorf("leaf 0xD.0 = %#x %#x %#x %#x, want %#x %#x %#x 0", a, b, c, d, tc.wantEAX, tc.wantEBX, tc.wantECX)
			}
			_, _, c1, _ := v.Query(0, CR4_OSXSAVE, tc.xcr0, 1, 0)
			_, b7, _, _ := v.Query(0, CR4_OSXSAVE, tc.xcr0, 7, 0)
			if c1&(1<<CPUID01_ECX_XSAVE) != 0 != tc.xsave || c1&(1<<CPUID01_ECX_AVX) != 0 != tc.avx || b7&(1<<5) != 0 != tc.avx2 {
				t.Errorf("XSAVE %v AVX %v AVX2 %v, want %v %v %v", c1&(1<<CPUID01_ECX_XSAVE) != 0,
					c1&(1<<CPUID01_ECX_AVX) != 0, b7&(1<<5) != 0, tc.xsave, tc.avx, tc.avx2)
			}
			if tc.mask&XCR0_ZMMHi == 0 && b7&avx512EBX != 0 {
				t.Errorf("AVX-512 shown without its state: %#x", b7)
			}
			a1, _, _, _ := v.Query(0, CR4_OSXSAVE, tc.xcr0, 0xD, 1)
			if a1&(1<<CPUID0D1_EAX_XSAVES) != 0 {
				t.Error("XSAVES shown without the control")
			}
			if a1&(1<<CPUID0D1_EAX_XSAVEC) != 0 {
				t.Error("XSAVEC shown though not asked for")
			}
			if tc.mask != 0 {
				cfg := CPUIDConfig{Host: host, CPUs: 1, XCR0: tc.mask, XSAVEC: true}
				if a1, _, _, _ := NewCPUIDView(cfg).Query(0, CR4_OSXSAVE, tc.xcr0, 0xD, 1); a1&(1<<CPUID0D1_EAX_XSAVEC) == 0 {
					t.Error("XSAVEC hidden though asked for (the host has it)")
				}
			}
			// Components beyond the mask (PKRU is 9 here) are empty.
			if a, b, _, _ := v.Query(0, CR4_OSXSAVE, tc.xcr0, 0xD, 9); a != 0 || b != 0 {
				t.Errorf("leaf 0xD.9 = %#x %#x", a, b)
			}
		})
	}
}

func TestCPUIDTSCLeaf(t *testing.T) {
	host := loadCPUIDDump(t, "testdata/cpuid-amd-epyc.txt")
	for _, tsc := range []uint64{99_989_000, 99_989_123, 150_000_000, 1_000_000_000, 2_400_123_456, 3_123_456_789, 4_000_000_000} {
		crystal := CrystalFor(tsc, 1_000_000_000)
		if crystal > 1_000_000_000 || crystal%1000 != 0 {
			t.Fatalf("TSC %d: crystal %d", tsc, crystal)
		}
		v := NewCPUIDView(CPUIDConfig{Host: host, CPUs: 1, TSCHz: tsc, CrystalHz: crystal})
		a, b, c, _ := v.Query(0, 0, 0, 0x15, 0)
		if a == 0 || uint64(c) != crystal {
			t.Fatalf("TSC %d: leaf 0x15 = %d %d %d", tsc, a, b, c)
		}
		// Linux's native_calibrate_tsc, in its 32-bit arithmetic:
		// crystal_khz * ebx_numerator / eax_denominator.
		crystalKHz := c / 1000
		gotKHz := crystalKHz * b / a
		if uint64(crystalKHz)*uint64(b) > 0xFFFF_FFFF {
			t.Fatalf("TSC %d: crystal_khz*EBX overflows 32 bits", tsc)
		}
		// Within 1 kHz times the ratio of the true rate.
		if diff := int64(uint64(gotKHz)*1000) - int64(tsc); diff > int64(b)*1000 || -diff > int64(b)*1000 {
			t.Errorf("TSC %d Hz: Linux computes %d kHz (crystal %d, ratio %d/%d)", tsc, gotKHz, c, b, a)
		}
		if a16, _, _, _ := v.Query(0, 0, 0, 0x16, 0); uint64(a16) != tsc/1_000_000 {
			t.Errorf("TSC %d: leaf 0x16 = %d MHz", tsc, a16)
		}
	}
}
