package dirtytest

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/uart"
	"github.com/doppel-ft/doppel/vmm/svm"
)

// The dirty-page test under AMD-V: the same guest, protocol, Device and
// checks as under VT-x (run.go), with nested page tables in place of EPT
// and the NPT D-bit scan as the dirty source (NPT has no PML). Bare metal
// only. The VM-exit phases (doppel.vmexittest) are VT-x only so far.

// RunAnyFromFlags runs the test under whichever vendor's virtualisation
// the CPU offers: VT-x when usable, else AMD-V. Where neither is usable it
// prints both reports and returns an error wrapping ErrNoVT that names
// what is missing and why.
func RunAnyFromFlags(out io.Writer, v *board.Values) error {
	return RunAny(out, OptionsFromFlags(v))
}

// RunAny is RunAnyFromFlags with options.
func RunAny(out io.Writer, o Options) error {
	vcaps := vmm.ProbeCaps()
	vErr := vcaps.Features().Usable()
	if vErr == nil {
		return Run(out, o)
	}
	scaps := svm.ProbeCaps()
	sErr := scaps.Features().Usable()
	for _, l := range vcaps.Report() {
		fmt.Fprintln(out, l)
	}
	if sErr == nil {
		return RunSVM(out, o, scaps)
	}
	for _, l := range scaps.Report() {
		fmt.Fprintln(out, l)
	}
	return fmt.Errorf("neither VT-x nor AMD-V is usable: VT-x: %s; AMD-V: %s: %w",
		strings.TrimPrefix(vErr.Error(), "vmm: "), strings.TrimPrefix(sErr.Error(), "svm: "), ErrNoVT)
}

// RunSVM runs the dirty-page rounds and the isolation probe under AMD-V
// with caps (svm.ProbeCaps) on a pinned thread.
func RunSVM(out io.Writer, o Options, caps svm.Caps) error {
	if o.SVMCPU0 == "" {
		o.SVMCPU0 = svm.CPU0Auto
	}
	place, ncpu, err := svm.HostPlacement(o.SVMCPU0, cpu.CPUID)
	if err != nil {
		return err
	}
	if place.AvoidCPU0 && o.CPU%ncpu == 0 {
		o.CPU = place.CPU(0, ncpu)
		fmt.Fprintf(out, "svm: %s: the vCPU runs on CPU %d\n", place.Reason, o.CPU)
	}
	if err := vmm.PinThread(o.CPU); err != nil {
		return err
	}
	for _, l := range caps.Report() {
		fmt.Fprintln(out, l)
	}
	if o.VMExit {
		fmt.Fprintln(out, "svm: doppel.vmexittest is VT-x only; running the dirty-page test alone")
	}
	s, err := newSVMMachine(out, caps, o)
	if err != nil {
		return err
	}
	defer s.svm.Disable()
	fmt.Fprintf(out, "ept-dirty: guest %q %d MiB, mode=npt, rounds=%d, seed=%d (AMD-V, ASID %d, nested paging)\n",
		o.GuestModule, o.GuestMem>>20, o.Rounds, o.Seed, s.hw.ASID)
	runErr := s.runMachine(o)
	var total uint64
	for _, n := range s.vcpu.Counts {
		total += n
	}
	fmt.Fprintf(out, "ept-dirty: guest stopped after %d #VMEXITs, %d unclaimed port accesses, %d instructions decoded by doppel\n",
		total, s.vcpu.Bus.Unclaimed, s.vcpu.Decoded)
	fmt.Fprintf(out, "ept-dirty: exits total %s\n", svmExitList(s.vcpu.Counts))
	runErr = s.dev.Finish(runErr)
	if runErr != nil {
		fmt.Fprintf(out, "ept-dirty: guest failed: %v\n", runErr)
		return runErr
	}
	if !s.dev.Finished {
		return fmt.Errorf("dirtytest: guest stopped before the test finished")
	}
	return s.dev.Err
}

// runMachine runs the vCPU through vmm.Machine, the vendor-neutral run
// loop, with svm.CPU as its vmm.CPU: the same Machine that drives VT-x
// vCPUs. SVM is already enabled on o.CPU, where Machine pins the vCPU.
func (s *svmMachine) runMachine(o Options) error {
	mem, err := s.region.Bytes(s.ram, o.GuestMem)
	if err != nil {
		return err
	}
	m, err := vmm.NewMachine(vmm.MachineConfig{
		CPUs: 1, Memory: vmm.GuestMemory(mem),
		Pin:    func(int) error { return vmm.PinThread(o.CPU) },
		Unpin:  vmm.UnpinThread,
		NewCPU: func(int) (vmm.CPU, error) { return svm.NewCPU(s.hw, s.vcpu), nil },
	})
	if err != nil {
		return err
	}
	if err := m.Start(); err != nil {
		return err
	}
	err = m.Wait()
	fmt.Fprintf(s.dev.cfg.Out, "ept-dirty: run by vmm.Machine with svm.CPU: %d guest entries\n", m.Exits()[0])
	return err
}

type svmMachine struct {
	machine
	svm  *svm.SVM
	hw   *svm.HWVCPU
	vcpu *svm.VCPU
	inv  svmInvalidator
}

// svmInvalidator forwards the tables' invalidations to the vCPU, which
// exists only after the tables (its VMCB holds their root).
type svmInvalidator struct{ h *svm.HWVCPU }

func (i *svmInvalidator) InvalidateSingleContext(ncr3 uint64) error {
	if i.h == nil {
		return nil // no vCPU has run yet: nothing cached
	}
	return i.h.InvalidateSingleContext(ncr3)
}

func newSVMMachine(out io.Writer, caps svm.Caps, o Options) (*svmMachine, error) {
	mm, err := board.ReadMemmap()
	if err != nil {
		return nil, err
	}
	res, _, err := board.SplitReserved(mm, o.DMA)
	if err != nil {
		return nil, fmt.Errorf("dirtytest: %w", err)
	}
	mem, err := vmm.MapPhys(res.Start, res.Size())
	if err != nil {
		return nil, err
	}
	s := &svmMachine{}
	m := &s.machine
	if m.region, err = ept.NewRegion(res.Start, mem); err != nil {
		return nil, err
	}
	if s.svm, err = svm.Enable(caps, m.region); err != nil {
		return nil, err
	}
	if m.ram, err = m.region.AllocGuestRAM(o.GuestMem, ept.LargeSize); err != nil {
		return nil, err
	}
	if m.tables, err = ept.New(m.region, &s.inv, ept.Options{Nested: true}); err != nil {
		return nil, err
	}
	if err := m.tables.Map(0, o.GuestMem, m.ram, ept.PermRWX, ept.MapOpt{}); err != nil {
		return nil, err
	}
	if err := m.loadGuest(o.GuestModule); err != nil {
		return nil, err
	}
	if s.hw, err = s.svm.NewVCPU(svm.GuestConfig{NCR3: m.tables.NCR3(), Entry: GuestLoadAddr, Stack: GuestLoadAddr}); err != nil {
		return nil, err
	}
	s.inv.h = s.hw
	s.vcpu = &svm.VCPU{VMCB: s.hw.VMCB, Bus: &vmm.IOBus{}, CPUID: cpu.CPUID, NRIPS: s.svm.Features.NRIPS, ReadGuest: m.readGuestBytes}
	s.vcpu.Regs.RBX = o.GuestMem
	counts, err := ParseCounts(o.Counts)
	if err != nil {
		return nil, err
	}
	m.dev, err = NewDevice(Config{
		Rounds: o.Rounds, Seed: o.Seed, MemSize: uint32(o.GuestMem), Counts: counts,
		Source: ept.ScanSource{T: m.tables}, Mode: "npt", Out: out, Clock: cpu.RDTSC,
		Probes: m.probes(o, mm), ReadGuest: m.readGuest,
	})
	if err != nil {
		return nil, err
	}
	s.vcpu.OnNPF = m.dev.NestedPageFault
	com1 := uart.New(uart.NewPrefixWriter(out, "guest: "), devices.NoLine)
	if err := s.vcpu.Bus.Add("com1", 0x3F8, uart.NumRegs, com1); err != nil {
		return nil, err
	}
	return s, s.vcpu.Bus.Add("doppel-test", PortBase, NumPorts, m.dev)
}

// readGuestBytes reads guest RAM through the nested tables, a page at a
// time (the decoder asks for at most one page's worth).
func (m *machine) readGuestBytes(gpa uint64, b []byte) error {
	mp, ok := m.tables.Lookup(gpa)
	if !ok {
		return fmt.Errorf("gpa %#x not mapped", gpa)
	}
	if gpa+uint64(len(b)) > mp.GPA+mp.Size {
		return errors.New("read crosses a page")
	}
	src, err := m.region.Bytes(mp.HPA+gpa-mp.GPA, uint64(len(b)))
	if err != nil {
		return err
	}
	copy(b, src)
	return nil
}

// NestedPageFault is the vCPU's nested-page-fault policy while the device
// runs, the AMD-V twin of EPTViolation: a fault at the outstanding probe
// address is logged and the guest resumes at its fixup address; any other
// stops the guest.
func (d *Device) NestedPageFault(v *svm.VCPU, gpa uint64, q svm.NPFInfo) (vmm.Action, error) {
	if d.probing && d.probe != 0 && gpa>>12 == d.probe>>12 && d.fixup != 0 {
		d.violations++
		if !d.expectFault(gpa) {
			d.probeFail(fmt.Sprintf("gpa %#x inside guest RAM faulted (%v)", gpa, q))
		} else {
			d.printf("ept-isolation: probe gpa=%#x -> nested page fault (%v), guest resumed", gpa, q)
		}
		v.VMCB.Set64(svm.SaveRIP, uint64(d.fixup))
		return vmm.ActionResume, nil
	}
	d.printf("ept-dirty: guest nested page fault at gpa %#x (%v): stopping the guest", gpa, q)
	return vmm.ActionStop, fmt.Errorf("%w: gpa %#x, %v", svm.ErrNestedPageFault, gpa, q)
}

func svmExitList(c map[svm.ExitCode]uint64) string {
	var s []string
	for code, n := range c {
		s = append(s, fmt.Sprintf("%v=%d", code, n))
	}
	if len(s) == 0 {
		return "none"
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}
