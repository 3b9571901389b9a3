package cpu

import (
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// onBareMetal mirrors board.OnBareMetal (board imports cpu, so cpu cannot
// import board): privileged instructions are only tested under the boot layer.
func onBareMetal() bool {
	// openat, not stat: the boot layer answers openat and read only.
	fd, err := syscall.Open("/proc/doppel/memmap", syscall.O_RDONLY, 0)
	if err != nil {
		return false
	}
	syscall.Close(fd)
	return true
}

// requireBareMetal skips a test of a privileged instruction on a host. They
// run when the test binary is itself the kernel on the boot layer:
//
//	CGO_ENABLED=0 go test -c -ldflags "$(cat boot/goldflags)" -o build/cpu.test ./cpu
//	bash boot/build.sh build/cpu.test build/cputest
//	qemu-system-x86_64 -kernel build/cputest/doppel.bin -append -test.v \
//	    -serial stdio -display none -no-reboot
func requireBareMetal(t *testing.T) {
	t.Helper()
	if !onBareMetal() {
		t.Skip("privileged instruction: runs only under the doppel boot layer")
	}
}

func TestCPUIDVendor(t *testing.T) {
	maxLeaf, ebx, ecx, edx := CPUID(LeafVendor, 0)
	if maxLeaf < LeafFeatures {
		t.Fatalf("CPUID.0: max basic leaf %#x, want >= 1", maxLeaf)
	}
	var vendor [12]byte
	for i, r := range []uint32{ebx, edx, ecx} {
		for j := 0; j < 4; j++ {
			vendor[4*i+j] = byte(r >> (8 * j))
		}
	}
	for _, c := range vendor {
		if c < 0x20 || c > 0x7e {
			t.Fatalf("CPUID.0 vendor %q is not printable ASCII", vendor)
		}
	}
	t.Logf("vendor %s, max leaf %#x", vendor, maxLeaf)
}

func TestCPUIDFeaturesHasTSCAndMSR(t *testing.T) {
	// Every x86-64 CPU has TSC and MSR (SDM Vol. 2A Table 3-11).
	_, _, _, edx := CPUID(LeafFeatures, 0)
	for _, bit := range []struct {
		name string
		n    uint
	}{{"TSC", CPUID_01_EDX_TSC}, {"MSR", CPUID_01_EDX_MSR}} {
		if edx&(1<<bit.n) == 0 {
			t.Errorf("CPUID.01H:EDX.%s[bit %d] clear on an x86-64 CPU (edx=%#x)", bit.name, bit.n, edx)
		}
	}
}

func TestCPUIDExtendedBrand(t *testing.T) {
	maxExt, _, _, _ := CPUID(LeafExtendedMax, 0)
	if maxExt < LeafBrand2 {
		t.Skipf("no brand string leaves (max extended leaf %#x)", maxExt)
	}
	var b strings.Builder
	for leaf := uint32(LeafBrand0); leaf <= LeafBrand2; leaf++ {
		a, bx, c, d := CPUID(leaf, 0)
		for _, r := range []uint32{a, bx, c, d} {
			for j := 0; j < 4; j++ {
				b.WriteByte(byte(r >> (8 * j)))
			}
		}
	}
	if strings.TrimSpace(strings.TrimRight(b.String(), "\x00")) == "" {
		t.Errorf("brand string is empty")
	}
}

func TestRDTSCAdvances(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0 := RDTSC()
	time.Sleep(2 * time.Millisecond)
	t1 := RDTSC()
	if t1 <= t0 {
		t.Fatalf("TSC did not advance across a 2ms sleep: %d then %d", t0, t1)
	}
	// 2 ms at any plausible TSC rate (>= 100 MHz) is at least 200000 ticks.
	if d := t1 - t0; d < 200000 {
		t.Errorf("TSC advanced %d ticks in >= 2ms: implausibly slow", d)
	}
}

// TestRDTSCPAuxOnLinux checks RDTSCP's IA32_TSC_AUX against the CPU the
// thread is pinned to: Linux loads it with (node << 12) | cpu.
func TestRDTSCPAuxOnLinux(t *testing.T) {
	if onBareMetal() {
		t.Skip("TSC_AUX convention is Linux's; the boot layer need not follow it")
	}
	if !HasRDTSCP() {
		t.Skip("CPU has no RDTSCP")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old [16]uint64
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(old), uintptr(unsafe.Pointer(&old))); e != 0 {
		t.Fatalf("sched_getaffinity: %v", e)
	}
	defer syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(old), uintptr(unsafe.Pointer(&old)))
	for cpu := 0; cpu < 64*len(old); cpu++ {
		if old[cpu/64]&(1<<(cpu%64)) == 0 {
			continue
		}
		var mask [16]uint64
		mask[cpu/64] = 1 << (cpu % 64)
		if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask))); e != 0 {
			t.Fatalf("sched_setaffinity(cpu %d): %v", cpu, e)
		}
		if _, aux := RDTSCP(); int(aux&0xfff) != cpu {
			t.Errorf("pinned to cpu %d, RDTSCP TSC_AUX = %#x", cpu, aux)
		}
	}
}

func TestControlRegistersBareMetal(t *testing.T) {
	requireBareMetal(t)
	cr0, cr4 := ReadCR0(), ReadCR4()
	for _, c := range []struct {
		reg  string
		val  uint64
		bit  uint
		name string
	}{
		{"CR0", cr0, CR0_PE, "PE"},
		{"CR0", cr0, CR0_PG, "PG"},
		{"CR4", cr4, CR4_PAE, "PAE"},
		{"CR4", cr4, CR4_OSFXSR, "OSFXSR"},
	} {
		if c.val&(1<<c.bit) == 0 {
			t.Errorf("%s.%s[bit %d] clear in long mode (%s=%#x)", c.reg, c.name, c.bit, c.reg, c.val)
		}
	}
	if cr3 := ReadCR3(); cr3 == 0 {
		t.Errorf("CR3 = 0 with paging on")
	}
}

func TestMSRRoundTripBareMetal(t *testing.T) {
	requireBareMetal(t)
	if !HasRDTSCP() {
		t.Skip("CPU has no IA32_TSC_AUX")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old := RDMSR(IA32_TSC_AUX)
	defer WRMSR(IA32_TSC_AUX, old)
	WRMSR(IA32_TSC_AUX, 0x5a5)
	if got := RDMSR(IA32_TSC_AUX); got != 0x5a5 {
		t.Errorf("IA32_TSC_AUX = %#x after writing 0x5a5", got)
	}
	if _, aux := RDTSCP(); aux != 0x5a5 {
		t.Errorf("RDTSCP aux = %#x after writing IA32_TSC_AUX = 0x5a5", aux)
	}
}

// TestPortsBareMetal uses the COM1 scratch register (8250/16550 SCR, offset
// 7), which no driver relies on.
func TestPortsBareMetal(t *testing.T) {
	requireBareMetal(t)
	const com1Scratch = 0x3f8 + 7
	old := Hardware.In8(com1Scratch)
	defer Hardware.Out8(com1Scratch, old)
	for _, v := range []uint8{0x00, 0x5a, 0xa5, 0xff} {
		Hardware.Out8(com1Scratch, v)
		if got := Hardware.In8(com1Scratch); got != v {
			t.Errorf("COM1 scratch: wrote %#x, read %#x", v, got)
		}
	}
}

func TestAPICIDMatchesInitialAPICID(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Below 256 CPUs the x2APIC ID and the initial APIC ID agree. The
	// thread is not pinned to a CPU, so a migration between the two reads
	// can differ once: retry.
	var id uint32
	var initial uint8
	for try := 0; try < 3; try++ {
		if id, initial = APICID(), InitialAPICID(); id >= 256 || id == uint32(initial) {
			return
		}
	}
	t.Errorf("APICID() = %d, InitialAPICID() = %d", id, initial)
}

// TestPCIConfigPortsBareMetal exercises the 16- and 32-bit port stubs on PCI
// configuration mechanism #1 (PCI Local Bus Specification 3.0, section
// 3.2.2.3.2): CONFIG_ADDRESS at 0xCF8 latches a 32-bit write, and
// CONFIG_DATA at 0xCFC then reads the host bridge's vendor and device IDs.
func TestPCIConfigPortsBareMetal(t *testing.T) {
	requireBareMetal(t)
	const (
		configAddress = 0xcf8
		configData    = 0xcfc
		enable        = 1 << 31 // bus 0, device 0, function 0, register 0
	)
	old := Hardware.In32(configAddress)
	defer Hardware.Out32(configAddress, old)
	Hardware.Out32(configAddress, enable)
	if got := Hardware.In32(configAddress); got != enable {
		t.Fatalf("CONFIG_ADDRESS reads %#x after writing %#x", got, uint32(enable))
	}
	ids := Hardware.In32(configData)
	vendor := Hardware.In16(configData)
	if vendor == 0xffff || vendor == 0 || uint32(vendor) != ids&0xffff {
		t.Errorf("host bridge vendor %#x (16-bit read), IDs %#x (32-bit read)", vendor, ids)
	}
	t.Logf("host bridge %04x:%04x", ids&0xffff, ids>>16)
}
