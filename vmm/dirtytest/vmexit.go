package dirtytest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/doppel-ft/doppel/vmm"
)

// VMExitConfig turns on the VM-exit phases of the test port (protocol.go):
// cpuid, spin and triple fault, in that order, after the rounds and the
// probe.
type VMExitConfig struct {
	// SpinIters is how many iterations the guest's spin loop makes (two
	// instructions each, no exit of its own).
	SpinIters uint32
	// HostTicks is a counter a host thread on the vCPU's CPU advances: it
	// moves during the spin only if the host's timer still slices threads
	// while the guest runs.
	HostTicks func() uint64
}

// CPUID bits the guest must see, SDM Vol. 2A CPUID leaf 1 ECX.
const (
	cpuid1ECXVMX        = 1 << vmm.CPUID01_ECX_VMX
	cpuid1ECXHypervisor = 1 << vmm.CPUID01_ECX_Hypervisor
	// cpuidHypervisorLeaf is the first hypervisor leaf: EAX the highest
	// hypervisor leaf, EBX ECX EDX the vendor signature.
	cpuidHypervisorLeaf = 0x4000_0000
	// cpuidReportLen is how many values the guest writes to PortCPUID.
	cpuidReportLen = 5
)

// vmexitOrder: the first spin runs with IF=0, the second with IF=1.
var vmexitOrder = []uint32{CmdCPUID, CmdSpin, CmdSpin, CmdTripleFault}

// SpinInterruptsOn in the SPIN value tells the guest to spin with IF=1;
// the low 31 bits are the iterations.
const SpinInterruptsOn = 1 << 31

// vmexitPhases is the state of the VM-exit phases.
type vmexitPhases struct {
	cfg   VMExitConfig
	d     *Device
	phase int // index of the next command in vmexitOrder

	cpuid   []uint32
	cpuidOK bool

	spinning                      bool
	spins                         int // spins started
	extBefore, ptBefore, tickBase uint64
	clockBase                     uint64
	spinOK                        [2]bool // by IF

	// marked, markClock, markExits: the timed CPUID loop's start.
	marked               bool
	markClock, markExits uint64

	// tripleFaultSent is set once the guest was told to triple fault.
	tripleFaultSent bool
}

func (x *vmexitPhases) next() uint32 {
	if x.phase >= len(vmexitOrder) {
		return CmdStop
	}
	c := vmexitOrder[x.phase]
	x.phase++
	if c == CmdTripleFault {
		x.tripleFaultSent = true
		x.d.printf("vmexit: telling the guest to triple fault (null IDT, INT3)")
	}
	return c
}

func (x *vmexitPhases) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	x.d.printf("vmexit: FAIL %s", msg)
	x.d.fail(errors.New("dirtytest: vmexit: " + msg))
}

func (x *vmexitPhases) cpuidValue(v uint32) {
	x.cpuid = append(x.cpuid, v)
	if len(x.cpuid) == cpuidReportLen {
		x.checkCPUID(x.cpuid)
	}
}

// checkCPUID checks what the guest saw: leaf 1 ECX with the hypervisor bit
// and without VMX, leaf 0x40000000 with doppel's signature.
func (x *vmexitPhases) checkCPUID(r []uint32) {
	ecx, max := r[0], r[1]
	sig := sigString(r[2], r[3], r[4])
	var bad []string
	if ecx&cpuid1ECXHypervisor == 0 {
		bad = append(bad, "leaf 1 ECX[31] hypervisor clear")
	}
	if ecx&cpuid1ECXVMX != 0 {
		bad = append(bad, "leaf 1 ECX[5] VMX set")
	}
	if max < cpuidHypervisorLeaf {
		bad = append(bad, fmt.Sprintf("leaf 0x40000000 EAX %#x below the leaf itself", max))
	}
	if sig != vmm.HypervisorSignature {
		bad = append(bad, fmt.Sprintf("vendor %q, want %q", sig, vmm.HypervisorSignature))
	}
	if len(bad) > 0 {
		x.fail("cpuid as the guest sees it: %s (leaf1.ecx=%#x)", strings.Join(bad, ", "), ecx)
		return
	}
	x.cpuidOK = true
	x.d.printf("vmexit: cpuid ok leaf1.ecx=%#x hypervisor=1 vmx=0 leaf0x40000000.eax=%#x vendor=%q", ecx, max, sig)
}

// mark starts or ends the guest's timed loop of CPUID exits and prints
// the cost of one exit round trip: VM exit, dispatch, CPUID on the host,
// RIP advance, VM entry, and the guest's own two loop instructions.
func (x *vmexitPhases) mark() {
	if x.d.cfg.Clock == nil {
		return
	}
	now, exits := x.d.cfg.Clock(), x.d.cfg.Exits()[vmm.ExitCPUID]
	if !x.marked {
		x.marked, x.markClock, x.markExits = true, now, exits
		return
	}
	x.marked = false
	if n := exits - x.markExits; n > 0 {
		x.d.printf("vmexit: cpuid exit round trip %d cycles (%d exits)", (now-x.markClock)/n, n)
	}
}

// sigString spells the 12-byte vendor signature of EBX, ECX, EDX.
func sigString(b, c, d uint32) string {
	var s [12]byte
	for i, w := range []uint32{b, c, d} {
		for j := range 4 {
			s[4*i+j] = byte(w >> (8 * j))
		}
	}
	return strings.TrimRight(string(s[:]), "\x00")
}

func (x *vmexitPhases) spinStart() uint32 {
	x.spinning = true
	x.spins++
	x.extBefore = x.d.cfg.Exits()[vmm.ExitExternalInterrupt]
	x.ptBefore = x.d.cfg.Exits()[vmm.ExitPreemptionTimer]
	x.tickBase = x.cfg.HostTicks()
	if x.d.cfg.Clock != nil {
		x.clockBase = x.d.cfg.Clock()
	}
	if x.interruptsOn() {
		return x.cfg.SpinIters&^SpinInterruptsOn | SpinInterruptsOn
	}
	return x.cfg.SpinIters &^ SpinInterruptsOn
}

// interruptsOn reports whether the current spin runs with IF=1.
func (x *vmexitPhases) interruptsOn() bool { return x.spins >= 2 }

func (x *vmexitPhases) spinEnd() {
	if !x.spinning {
		x.fail("guest ended a spin it never started")
		return
	}
	x.spinning = false
	ext := x.d.cfg.Exits()[vmm.ExitExternalInterrupt] - x.extBefore
	pt := x.d.cfg.Exits()[vmm.ExitPreemptionTimer] - x.ptBefore
	ticks := x.cfg.HostTicks() - x.tickBase
	var cycles uint64
	if x.d.cfg.Clock != nil {
		cycles = x.d.cfg.Clock() - x.clockBase
	}
	if !x.interruptsOn() {
		// The host must get its CPU back even from a guest with IF=0: by
		// external-interrupt exits (SDM), or by the preemption timer
		// where those do not come (Bochs). The host ticks are only
		// reported: under Bochs they are few (see the vmm package doc).
		x.d.printf("vmexit: spin with IF=0: external-interrupt exits=%d preemption-timer exits=%d host-ticks=%d cycles=%d",
			ext, pt, ticks, cycles)
		if ext+pt == 0 {
			x.fail("the guest kept the CPU for its whole IF=0 spin: no external-interrupt or preemption-timer exit")
			return
		}
		x.spinOK[0] = true
		return
	}
	x.d.printf("vmexit: external-interrupt exits=%d host-ticks=%d during guest spin", ext, ticks)
	x.d.printf("vmexit: spin with IF=1 of %d iterations: %d cycles, %d preemption-timer exits", x.cfg.SpinIters, cycles, pt)
	switch {
	case ext == 0:
		x.fail("no external-interrupt exit while the guest spun: the host timer does not reach doppel")
	case ticks == 0:
		x.fail("the host thread on the vCPU's CPU never ran while the guest spun")
	default:
		x.spinOK[1] = true
	}
}

// Finish judges the run after the guest stopped with runErr: a triple
// fault is the expected end once the guest was told to fault, and every
// phase must have passed. It returns the error the run ends with.
func (d *Device) Finish(runErr error) error {
	var tf *vmm.TripleFaultError
	if errors.As(runErr, &tf) {
		d.printf("vmexit: guest triple fault at rip=%#x (guest stopped)", tf.RIP)
	}
	if d.vx == nil {
		return runErr
	}
	x := d.vx
	switch {
	case tf != nil && x.tripleFaultSent:
		runErr = nil
	case runErr == nil:
		x.fail("the guest stopped without the triple fault it was told to make")
	}
	if !x.cpuidOK && d.Err == nil {
		x.fail("the cpuid phase did not pass (%d of %d values reported)", len(x.cpuid), cpuidReportLen)
	}
	if !(x.spinOK[0] && x.spinOK[1]) && d.Err == nil {
		x.fail("the spin phases did not pass (IF=0 %v, IF=1 %v)", x.spinOK[0], x.spinOK[1])
	}
	return runErr
}
