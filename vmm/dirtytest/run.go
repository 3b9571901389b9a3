package dirtytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/uart"
)

// Boot flags of the dirty-page test, registered with board.Known.
const (
	FlagRounds    = "doppel.dirtytest.rounds"
	FlagSeed      = "doppel.dirtytest.seed"
	FlagIsolation = "doppel.dirtytest.isolation"
	FlagScan      = "doppel.ept.scan"
	FlagGuestMem  = "doppel.guest.mem"
	FlagCounts    = "doppel.dirtytest.counts"
	FlagVMExit    = "doppel.vmexittest"
	FlagSpin      = "doppel.vmexittest.spin"
)

func init() {
	for _, f := range []board.Flag{
		{Name: FlagRounds, Kind: board.KindInt, Default: "50", Min: 0, Max: 1 << 20,
			Help: "rounds of the EPT dirty-page test run with doppel.guest"},
		{Name: FlagSeed, Kind: board.KindInt, Default: "1", Min: 0, Max: 1<<32 - 1,
			Help: "seed of the dirty-page test's first round"},
		{Name: FlagIsolation, Kind: board.KindBool, Default: "1",
			Help: "after the rounds, probe guest writes outside its memory"},
		{Name: FlagScan, Kind: board.KindBool, Default: "0",
			Help: "harvest dirty pages by scanning EPT even where the CPU has PML"},
		{Name: FlagGuestMem, Kind: board.KindSize, Default: "32M",
			Help: "guest RAM, carved from doppel.reserve"},
		{Name: FlagCounts, Kind: board.KindString, Default: FormatCounts(DefaultCounts),
			Help: "draws per round of the dirty-page test, comma-separated, cycled"},
		{Name: FlagVMExit, Kind: board.KindBool, Default: "0",
			Help: "after the dirty test, run the VM-exit phases (cpuid, spin, triple fault) and provoke failed VM entries"},
		{Name: FlagSpin, Kind: board.KindInt, Default: "50000000", Min: 1, Max: 1<<31 - 1,
			Help: "iterations of the guest's spin loop in the VM-exit phases (2 instructions each)"},
	} {
		if err := board.Known.Register(f); err != nil {
			panic(err) // a bad built-in flag is a programming error
		}
	}
}

// ErrNoVT is wrapped by RunFromFlags when the CPU cannot run guests: the
// caller reports it and keeps the console.
var ErrNoVT = errors.New("no guest started")

// Options of Run.
type Options struct {
	GuestModule string // multiboot module with testguest.bin
	Rounds      int
	Seed        uint32
	Isolation   bool
	ForceScan   bool
	GuestMem    uint64
	CPU         int    // CPU to run the vCPU on
	SVMCPU0     string // under AMD-V, may the vCPU run on CPU 0 (svm.CPU0Auto, ...)
	Counts      string // draws per round, comma-separated (ParseCounts)
	VMExit      bool
	SpinIters   uint32
	DMA         uint64 // top of the reserved region left to nic/dma (board.SplitReserved)
}

// OptionsFromFlags reads the test's boot flags.
func OptionsFromFlags(v *board.Values) Options {
	return Options{
		GuestModule: v.String(board.FlagGuest),
		Rounds:      int(v.Int(FlagRounds)),
		Seed:        uint32(v.Int(FlagSeed)),
		Isolation:   v.Bool(FlagIsolation),
		ForceScan:   v.Bool(FlagScan),
		GuestMem:    v.Size(FlagGuestMem),
		Counts:      v.String(FlagCounts),
		VMExit:      v.Bool(FlagVMExit),
		SpinIters:   uint32(v.Int(FlagSpin)),
		DMA:         v.Size(board.FlagDMA),
		SVMCPU0:     v.String(board.FlagSVMCPU0),
	}
}

// RunFromFlags runs the test as the boot flags say, printing on out. It
// returns an error wrapping ErrNoVT when VT-x is missing or off, after
// printing why; the kernel keeps its console then.
func RunFromFlags(out io.Writer, v *board.Values) error {
	return Run(out, OptionsFromFlags(v))
}

// Run boots the test guest under VT-x with doppel's EPT as a one-vCPU
// vmm.Machine (its vCPU on a thread pinned to o.CPU) and runs the
// dirty-page rounds and the isolation probe; with o.VMExit also the
// VM-exit phases (vmexit.go), which end in the guest's triple fault, and
// then two failed VM entries provoked on purpose (hostside.go). Bare
// metal only.
func Run(out io.Writer, o Options) error {
	caps := vmm.ProbeCaps()
	for _, l := range caps.Report() {
		fmt.Fprintln(out, l)
	}
	if err := caps.Features().Usable(); err != nil {
		return fmt.Errorf("%v: %w", err, ErrNoVT)
	}
	mm, err := board.ReadMemmap()
	if err != nil {
		return err
	}
	m, err := newMachine(mm, o)
	if err != nil {
		return err
	}
	ram, err := m.region.Bytes(m.ram, o.GuestMem)
	if err != nil {
		return err
	}
	var c *testCPU
	vm, err := vmm.NewMachine(vmm.MachineConfig{
		CPUs:   1,
		Memory: vmm.GuestMemory(ram),
		Pin:    func(int) error { return vmm.PinThread(o.CPU) },
		Unpin:  vmm.UnpinThread,
		NewCPU: func(int) (vmm.CPU, error) {
			var err error
			c, err = m.newCPU(out, caps, o, mm)
			return c, err
		},
	})
	if err != nil {
		return err
	}
	if err := vm.Start(); err != nil {
		return err
	}
	vm.Wait()
	// The vCPU's own error, as Run returned it before the Machine (the
	// Machine's wraps it with the vCPU number).
	runErr := c.err
	if m.ticker != nil {
		m.ticker.stop()
	}
	var total uint64
	for _, n := range m.vcpu.Counts {
		total += n
	}
	fmt.Fprintf(out, "ept-dirty: guest stopped after %d VM exits, %d unclaimed port accesses\n", total, m.vcpu.Bus.Unclaimed)
	fmt.Fprintf(out, "ept-dirty: exits total %s\n", exitDelta(&[vmm.NumExitReasons]uint64{}, &m.vcpu.Counts))
	runErr = m.dev.Finish(runErr)
	if runErr != nil {
		fmt.Fprintf(out, "ept-dirty: guest failed: %v\n", runErr)
		return runErr
	}
	if !m.dev.Finished {
		return fmt.Errorf("dirtytest: guest stopped before the test finished")
	}
	if o.VMExit {
		// Provoked on the vCPU's thread as the Machine ended it (testCPU.Close).
		out.Write(c.provoked.Bytes())
		if err := c.provokeErr; err != nil {
			m.dev.fail(err)
		} else if !c.didProvoke {
			m.dev.fail(fmt.Errorf("dirtytest: vmexit: the entry failures were not provoked"))
		}
		if m.dev.Err == nil {
			fmt.Fprintln(out, "vmexit: all phases passed")
		}
	}
	return m.dev.Err
}

type machine struct {
	region *ept.Region
	vmx    *vmm.VMX // VMX operation of the vCPU's CPU (VT-x only)
	tables *ept.Tables
	ram    uint64
	hw     *vmm.HWVCPU
	vcpu   *vmm.VCPU
	dev    *Device
	mode   string
	ticker *hostTicker
}

// newMachine reserves the guest's RAM and loads the guest; the VMX side
// comes with the vCPU (newCPU), on its pinned thread.
func newMachine(mm board.MemoryMap, o Options) (*machine, error) {
	res, _, err := board.SplitReserved(mm, o.DMA)
	if err != nil {
		return nil, fmt.Errorf("dirtytest: %w", err)
	}
	mem, err := vmm.MapPhys(res.Start, res.Size())
	if err != nil {
		return nil, err
	}
	m := &machine{}
	if m.region, err = ept.NewRegion(res.Start, mem); err != nil {
		return nil, err
	}
	if m.ram, err = m.region.AllocGuestRAM(o.GuestMem, ept.LargeSize); err != nil {
		return nil, err
	}
	if err := m.loadGuest(o.GuestModule); err != nil {
		return nil, err
	}
	return m, nil
}

// newCPU enables VMX on the vCPU's pinned thread, maps the guest behind
// EPT (whose invalidations run INVEPT, in VMX operation on this CPU),
// builds the vCPU and its devices, and says how the test runs, before the
// guest's first instruction.
func (m *machine) newCPU(out io.Writer, caps vmm.Caps, o Options, mm board.MemoryMap) (*testCPU, error) {
	var err error
	if m.vmx, err = vmm.Enable(caps, m.region); err != nil {
		return nil, err
	}
	c := &testCPU{m: m, tid: syscall.Gettid(), vmexit: o.VMExit}
	if m.tables, err = ept.New(m.region, vmm.Invept{}, ept.Options{AccessedDirty: true}); err != nil {
		return nil, errors.Join(err, m.vmx.Disable())
	}
	if err := m.tables.Map(0, o.GuestMem, m.ram, ept.PermRWX, ept.MapOpt{}); err != nil {
		return nil, errors.Join(err, m.vmx.Disable())
	}
	if err := m.setup(out, o, mm); err != nil {
		return nil, errors.Join(err, m.vmx.Disable())
	}
	fmt.Fprintf(out, "ept-dirty: guest %q %d MiB, mode=%s, rounds=%d, seed=%d\n",
		o.GuestModule, o.GuestMem>>20, m.mode, o.Rounds, o.Seed)
	return c, nil
}

// testCPU is the test guest's vCPU as a vmm.CPU of a Machine.
type testCPU struct {
	m       *machine
	tid     int
	inGuest atomic.Bool
	// err is the last Step's error: why the guest stopped, if it failed.
	err error
	// vmexit: provoke the failed entries at Close (hostside.go), on this
	// thread while the VMCS is current; provoked holds their lines.
	vmexit     bool
	didProvoke bool
	provoked   bytes.Buffer
	provokeErr error
}

// Step implements vmm.CPU.
func (c *testCPU) Step() (vmm.Action, error) {
	c.inGuest.Store(true)
	act, err := c.m.hw.Step(c.m.vcpu)
	c.inGuest.Store(false)
	c.err = err
	return act, err
}

// Kick implements vmm.CPU: an IPI (tgkill's SIGURG) makes an external-
// interrupt exit, as for vmm.VMXCPU. The test guest stops by itself; a
// Machine kicks it only to stop it early.
func (c *testCPU) Kick() {
	if c.inGuest.Load() {
		syscall.Tgkill(syscall.Getpid(), c.tid, syscall.SIGURG)
	}
}

// errNoSave: the test guest's vCPU state is not saved.
var errNoSave = fmt.Errorf("%w: the dirty test's vCPU has no saved state", vmm.ErrUnsupported)

// Save implements vmm.CPU.
func (c *testCPU) Save() ([]byte, error) { return nil, errNoSave }

// Restore implements vmm.CPU.
func (c *testCPU) Restore([]byte) error { return errNoSave }

// Close implements vmm.CPU: after the VM-exit phases (which end in the
// guest's triple fault), re-enter with broken fields, then leave VMX
// operation.
func (c *testCPU) Close() error {
	var tf *vmm.TripleFaultError
	if c.vmexit && c.m.dev.Finished && (c.err == nil || errors.As(c.err, &tf)) {
		c.didProvoke = true
		c.provokeErr = provokeEntryFailures(&c.provoked, c.m.hw, c.m.vcpu)
	}
	return c.m.vmx.Disable()
}

// loadGuest copies the module into guest RAM at GuestLoadAddr.
func (m *machine) loadGuest(name string) error {
	mods, err := board.ReadModules()
	if err != nil {
		return err
	}
	mod, ok := board.FindModule(mods, name)
	if !ok {
		return fmt.Errorf("dirtytest: no multiboot module %q", name)
	}
	if mod.Size() > (WindowEndPage<<12)-GuestLoadAddr {
		return fmt.Errorf("dirtytest: module %q of %d bytes exceeds the guest's code window", name, mod.Size())
	}
	start := mod.Start &^ 0xFFF
	img, err := vmm.MapPhys(start, (mod.End-start+0xFFF)&^0xFFF)
	if err != nil {
		return err
	}
	dst, err := m.region.Bytes(m.ram+GuestLoadAddr, mod.Size())
	if err != nil {
		return err
	}
	copy(dst, img[mod.Start-start:mod.End-start])
	return nil
}

func (m *machine) setup(out io.Writer, o Options, mm board.MemoryMap) error {
	frames := o.GuestMem / 4096
	var src ept.DirtySource = ept.ScanSource{T: m.tables}
	var pml *ept.PMLSource
	var pmlPA uint64
	m.mode = "scan"
	if m.vmx.Features.PML && !o.ForceScan {
		var err error
		if pmlPA, err = m.region.AllocTable(); err != nil {
			return err
		}
		pml = ept.NewPMLSource(m.tables, m.region.Table(pmlPA), vmm.HWVMCS{}, frames)
		src, m.mode = pml, "pml"
	}
	var err error
	m.hw, err = m.vmx.NewVCPU(m.region, vmm.GuestConfig{EPTP: m.tables.EPTP(), PMLAddr: pmlPA, Entry: GuestLoadAddr, Stack: GuestLoadAddr})
	if err != nil {
		return err
	}
	m.vcpu = &vmm.VCPU{VMCS: m.hw.VMCS, Bus: &vmm.IOBus{}, CPUID: cpu.CPUID}
	m.vcpu.Regs.RBX = o.GuestMem
	probes := m.probes(o, mm)
	counts, err := ParseCounts(o.Counts)
	if err != nil {
		return err
	}
	var vx *VMExitConfig
	if o.VMExit {
		m.ticker = startHostTicker(o.CPU)
		vx = &VMExitConfig{SpinIters: o.SpinIters, HostTicks: m.ticker.ticks.Load}
	}
	m.dev, err = NewDevice(Config{
		Rounds: o.Rounds, Seed: o.Seed, MemSize: uint32(o.GuestMem), Counts: counts, Source: src, Mode: m.mode, Out: out,
		Clock: cpu.RDTSC, Exits: func() *[vmm.NumExitReasons]uint64 { return &m.vcpu.Counts },
		Probes: probes, ReadGuest: m.readGuest, VMExit: vx,
	})
	if err != nil {
		return err
	}
	m.vcpu.OnEPTViolation = m.dev.EPTViolation
	if pml != nil {
		m.vcpu.OnPMLFull = func() error {
			t0 := cpu.RDTSC()
			_, err := pml.Drain()
			m.dev.AddDrain(cpu.RDTSC() - t0)
			return err
		}
	}
	com1 := uart.New(uart.NewPrefixWriter(out, "guest: "), devices.NoLine)
	if err := m.vcpu.Bus.Add("com1", 0x3F8, uart.NumRegs, com1); err != nil {
		return err
	}
	return m.vcpu.Bus.Add("doppel-test", PortBase, NumPorts, m.dev)
}

// probes lists the isolation probe's addresses: just past guest RAM, far
// past it, the local APIC, and the host addresses of the EPT root, the
// guest RAM itself and the kernel, as guest-physical addresses. A 32-bit
// guest reaches only the first 4 GiB; higher ones are left out.
func (m *machine) probes(o Options, mm board.MemoryMap) []uint64 {
	if !o.Isolation {
		return nil
	}
	cands := []uint64{o.GuestMem, o.GuestMem + 0x123000, 0xFEE0_0000, m.tables.EPTP() &^ 0xFFF, m.ram}
	for _, k := range mm.Of(board.RegionKernel) {
		cands = append(cands, k.Start+0x20_0000, k.End-0x1000)
	}
	var p []uint64
	for _, c := range cands {
		c &^= 3
		if c != 0 && c < 1<<32 && !InWindow(c>>12) {
			p = append(p, c)
		}
	}
	return p
}

// readGuest reads guest RAM through the EPT mapping.
func (m *machine) readGuest(gpa uint64) (uint32, error) {
	mp, ok := m.tables.Lookup(gpa)
	if !ok {
		return 0, fmt.Errorf("gpa %#x not mapped", gpa)
	}
	b, err := m.region.Bytes(mp.HPA+gpa-mp.GPA, 4)
	if err != nil {
		return 0, err
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24, nil
}
