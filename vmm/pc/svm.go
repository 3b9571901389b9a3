package pc

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices/lapic"
	"github.com/doppel-ft/doppel/vmm/loader"
	"github.com/doppel-ft/doppel/vmm/svm"
)

// This file runs the PC guest under AMD-V: the same board, loader, ACPI
// tables, CPUID view and vmm.Machine as under VT-x; only the vCPUs
// (svm.PCCPU) and the guest-physical tables (ept in its NPT format)
// differ. Run picks it when VT-x is not usable and SVM is (vendorHook).

// svmUsable reports whether AMD-V can run the guest.
func svmUsable() (svm.Caps, error) {
	caps := svm.ProbeCaps()
	return caps, caps.Features().Usable()
}

// nptInvalidator fans a table change out to every vCPU's ASID flush (the
// vCPUs register as they are built).
type nptInvalidator struct {
	mu  sync.Mutex
	hws []*svm.HWVCPU
}

func (n *nptInvalidator) InvalidateSingleContext(root uint64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.hws {
		if err := h.InvalidateSingleContext(root); err != nil {
			return err
		}
	}
	return nil
}

// svmOn is a PCCPU that also leaves SVM operation on its CPU at Close.
type svmOn struct {
	*svm.PCCPU
	s *svm.SVM
}

func (c *svmOn) Close() error { c.s.Disable(); return nil }

// runSVM is Run under AMD-V (without the restore test).
func runSVM(o Options, caps svm.Caps) (*Report, error) {
	if o.CPUs < 1 {
		o.CPUs = 1
	}
	ncpu := runtime.NumCPU()
	if o.CPUs > ncpu {
		return nil, fmt.Errorf("pc: %d vCPUs need as many host CPUs, there are %d", o.CPUs, ncpu)
	}
	mm, err := board.ReadMemmap()
	if err != nil {
		return nil, err
	}
	// Only the guest part of the reserved region: its top is the NICs'
	// DMA memory (doppel.dma), and the region hands out table frames
	// (NPT, VMCB, IOPM, MSRPM) from the top down, over the NIC's rings.
	res, _, err := board.SplitReserved(mm, o.DMA)
	if err != nil {
		return nil, fmt.Errorf("pc: %w (doppel.reserve, doppel.dma)", err)
	}
	raw, err := vmm.MapPhys(res.Start, res.Size())
	if err != nil {
		return nil, err
	}
	region, err := ept.NewRegion(res.Start, raw)
	if err != nil {
		return nil, err
	}
	var regionMu sync.Mutex
	hpa, err := region.AllocGuestRAM(o.MemSize, ept.LargeSize)
	if err != nil {
		return nil, fmt.Errorf("pc: guest RAM of %s: %w", board.FormatBytes(o.MemSize), err)
	}
	inv := &nptInvalidator{}
	tables, err := ept.New(region, inv, ept.Options{Nested: true})
	if err != nil {
		return nil, fmt.Errorf("pc: nested tables: %w", err)
	}
	if err := tables.Map(0, o.MemSize, hpa, ept.PermRWX, ept.MapOpt{}); err != nil {
		return nil, fmt.Errorf("pc: map guest RAM: %w", err)
	}
	// The guest writes what its nested tables map without an exit: they
	// must reach its RAM block and nothing else (no identity-mapped or
	// stray range over doppel's own memory).
	if n, err := tables.CheckConfined(hpa, hpa+o.MemSize); err != nil || n != o.MemSize {
		return nil, fmt.Errorf("pc: nested tables map %d bytes, want %d inside [%#x, %#x): %v", n, o.MemSize, hpa, hpa+o.MemSize, err)
	}
	b, err := region.Bytes(hpa, o.MemSize)
	if err != nil {
		return nil, err
	}
	mem := vmm.GuestMemory(b)
	layout := loader.NewPCLayout(o.MemSize)
	var acpiBytes []byte
	if !o.NoACPI {
		bd, err := NewBoard(BoardConfig{CPUs: o.CPUs, MemSize: o.MemSize, Console: io.Discard, Clock: &vmm.TSCClock{Hz: 1, Read: cpu.RDTSC}, TSCHz: 1})
		if err != nil {
			return nil, err
		}
		t, err := bd.ACPITables()
		if err != nil {
			return nil, err
		}
		if err := mem.Write(t.Base, t.Bytes); err != nil {
			return nil, fmt.Errorf("pc: ACPI tables: %w", err)
		}
		layout.RSDP, acpiBytes = t.RSDP, t.Bytes
	}
	tscHz := vmm.MeasureTSCHz(20 * time.Millisecond)
	cmdline := o.Cmdline
	if k, err := loader.Detect(o.Kernel); err == nil {
		var added bool
		if cmdline, added = withTSCRate(k, cmdline, tscHz); added {
			fmt.Fprintf(o.Log, "AMD-V: the guest kernel's command line gets %s%d (Linux reads the TSC rate from CPUID 0x15 only on Intel)\n", tscKHzParam, tscHz/1000)
		}
	}
	state, kind, err := loader.Load(loader.Flat(mem), loader.Config{Layout: layout, Kernel: o.Kernel, Cmdline: cmdline, Initrd: o.Initrd})
	if err != nil {
		return nil, fmt.Errorf("pc: load kernel: %w", err)
	}
	fmt.Fprintf(o.Log, "AMD-V: %v kernel, %d vCPUs, %s RAM, TSC %d kHz, entry %#x (%v), ACPI tables %d bytes, NRIP save %v, decode assists %v\n",
		kind, o.CPUs, board.FormatBytes(o.MemSize), tscHz/1000, state.RIP, state.Mode, len(acpiBytes),
		caps.Features().NRIPS, caps.Features().DecodeAssists)
	clock := &vmm.TSCClock{Hz: tscHz, Base: cpu.RDTSC(), Read: cpu.RDTSC}
	start := time.Now()

	v := &vm{clock: clock}
	cpus := make([]*svm.PCCPU, o.CPUs)
	crystal := vmm.CrystalFor(tscHz, lapic.DefaultBusHz)
	v.board, err = NewBoard(BoardConfig{CPUs: o.CPUs, MemSize: o.MemSize, Console: o.Console, Clock: clock, TSCHz: tscHz, BusHz: crystal,
		OnStop: func(reason string) {
			v.mu.Lock()
			if v.stop == "" {
				v.stop = reason
			}
			v.mu.Unlock()
			v.m.Stop(nil)
		}})
	if err != nil {
		return nil, err
	}
	// No RDTSCP (TSC_AUX is not in the VMCB) and no INVPCID for the guest.
	view := vmm.NewCPUIDView(vmm.CPUIDConfig{Host: cpu.CPUID, CPUs: o.CPUs, TSCHz: tscHz, CrystalHz: crystal, TSCDeadline: true})
	v.m, err = vmm.NewMachine(vmm.MachineConfig{
		CPUs:   o.CPUs,
		Memory: mem,
		Pin:    func(i int) error { return vmm.PinThread(i % ncpu) },
		Unpin:  vmm.UnpinThread,
		NewCPU: func(i int) (vmm.CPU, error) {
			var st *loader.BootState
			if i == 0 {
				st = state
			}
			regionMu.Lock()
			defer regionMu.Unlock()
			s, err := svm.Enable(caps, region)
			if err != nil {
				return nil, fmt.Errorf("pc: enable SVM on vcpu %d: %w", i, err)
			}
			c, err := svm.NewPCCPU(svm.PCConfig{
				SVM: s, Index: i, NCR3: tables.NCR3(), Start: st, Mem: mem,
				Ports: v.board.Ports, MMIO: v.board.MMIO[i], Devices: &v.board.Devices,
				Source: v.board.Source(i), APIC: v.board.LAPICs[i], SIPI: v.board.LAPICs[i], TPR: v.board.LAPICs[i],
				Timers: v.board.Timers(i), Clock: clock, View: view, Wake: v.board.Wake[i],
			})
			if err != nil {
				s.Disable()
				return nil, fmt.Errorf("pc: vcpu %d: %w", i, err)
			}
			inv.mu.Lock()
			inv.hws = append(inv.hws, c.HW)
			inv.mu.Unlock()
			cpus[i] = c
			return &svmOn{c, s}, nil
		},
	})
	if err != nil {
		return nil, err
	}
	for _, d := range v.board.Snapshotters() {
		if err := v.m.AddDevice(d.Name, d.State); err != nil {
			return nil, err
		}
	}
	// Console input with back-pressure, as under VT-x: what does not fit
	// in the UART's FIFO waits (typing into a busy 2-vCPU guest lost 16
	// bytes at a time with Receive).
	q := &inputQueue{b: v.board}
	o.Input.set(q.add)
	if err := v.m.Start(); err != nil {
		return nil, err
	}
	// A line every 10 s while the guest runs: how far each vCPU got.
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	for stopped := false; !stopped; {
		select {
		case <-progress.C:
			for i, c := range cpus {
				if c != nil {
					n, code, rip := c.Progress()
					vm := c.HW.VMCB // racy reads, for this log line only
					l := v.board.LAPICs[i]
					fmt.Fprintf(o.Log, "AMD-V vcpu %d: %d #VMEXITs so far, last %v at rip %#x; injected %d, halts %d, rflags %#x, V_INTR %#x, EVENTINJ %#x, shadow %#x, interrupt pending %v; LAPIC IRR %v ISR %v ExtINT %v\n",
						i, n, code, rip, c.Injected(), c.Halts, vm.Get64(svm.SaveRFLAGS), vm.Get64(svm.VIntr), vm.Get64(svm.EventInj), vm.Get64(svm.InterruptShadow),
						v.board.Source(i).InterruptPending(), apicVectors(l, 0x200), apicVectors(l, 0x100), l.ExtINTPending())
				}
				if i == len(cpus)-1 {
					v.board.Devices.Lock()
					fmt.Fprintf(o.Log, "AMD-V board: UART irq %v, %d overruns; PIC INTR %v\n", v.board.UART.Interrupt(), v.board.UART.Overruns, v.board.PIC.Interrupt())
					v.board.Devices.Unlock()
				}
			}
		case <-v.m.Done():
			stopped = true
		case req := <-o.Requests:
			req.Done <- RestoreResult{Err: errors.New("pc: the restore test is not implemented under AMD-V")}
		}
	}
	rep := &Report{}
	rep.Err = v.m.Wait()
	o.Input.set(nil)
	rep.Runtime = time.Since(start)
	for i, c := range cpus {
		if c == nil {
			continue
		}
		var ex [vmm.NumExitReasons]uint64
		copy(ex[:], c.V.Counts[:])
		rep.Exits = append(rep.Exits, ex)
		rep.Injected = append(rep.Injected, c.Injected())
		rep.Halts = append(rep.Halts, c.Halts)
		rep.MSRFaults = append(rep.MSRFaults, c.V.MSRFaults)
		rep.MMIO = append(rep.MMIO, c.V.MMIOExits)
		fmt.Fprintf(o.Log, "AMD-V vcpu %d: %s; %d instructions decoded for their length\n", i, svmExitSummary(c.S.Counts), c.S.Decoded)
	}
	v.mu.Lock()
	rep.Reason = v.stop
	v.mu.Unlock()
	rep.ExitStatus = v.board.ExitStatus
	if rep.Reason == "" && rep.Err == nil {
		rep.Reason = "stopped"
	}
	return rep, nil
}

// tscKHzParam is Linux's boot parameter for the TSC rate in kHz
// (arch/x86/kernel/tsc.c, tsc_early_khz_setup), read before any
// calibration.
const tscKHzParam = "tsc_early_khz="

// withTSCRate returns cmdline with tscKHzParam set to the guest's TSC rate
// for a Linux kernel (a bzImage), unless cmdline sets it already, and
// whether it added it.
//
// Why: Linux 6.1 takes the TSC rate from CPUID 0x15/0x16 only on Intel
// (native_calibrate_tsc, cpu_khz_from_cpuid), which doppel's CPUID view
// answers under VT-x. On AMD it calibrates against the PIT, checked by an
// HPET or ACPI PM timer, with bounds on how long port reads may take (at
// least 1,000 PIT reads in 10 ms with a max/min spread under 10x; a
// reference read under 100,000 TSC cycles). An emulated CPU's I/O exits
// (QEMU TCG's SVM) miss them, even with a PM timer offered. Linux then
// marks the TSC unstable and, on doppel's HW-reduced ACPI machine (no PIT
// clockevent), its LAPIC timer calibration waits for jiffies that never
// advance: the 2-vCPU guest hung after "Marking TSC unstable". Doppel
// knows the rate exactly; the boot loader passing it is what a KVM guest
// gets from kvmclock.
func withTSCRate(k loader.Kind, cmdline string, tscHz uint64) (string, bool) {
	if k != loader.KindBzImage || tscHz < 1000 {
		return cmdline, false
	}
	for _, f := range strings.Fields(cmdline) {
		if strings.HasPrefix(f, tscKHzParam) {
			return cmdline, false
		}
	}
	arg := fmt.Sprintf("%s%d", tscKHzParam, tscHz/1000)
	if strings.TrimSpace(cmdline) == "" {
		return arg, true
	}
	return cmdline + " " + arg, true
}

// apicVectors lists the vectors set in the LAPIC's 256-bit register at
// off (ISR 0x100, IRR 0x200; SDM Vol. 3A 11.8.4), for the progress log.
func apicVectors(l *lapic.LAPIC, off uint64) []int {
	var vs []int
	for r := uint64(0); r < 8; r++ {
		var b [4]byte
		l.MMIORead(off+r*0x10, b[:])
		for bit := 0; bit < 32; bit++ {
			if b[bit/8]&(1<<(bit%8)) != 0 {
				vs = append(vs, int(r)*32+bit)
			}
		}
	}
	return vs
}

// svmExitSummary lists #VMEXITs by exit code, most frequent first.
func svmExitSummary(m map[svm.ExitCode]uint64) string {
	type kv struct {
		c svm.ExitCode
		n uint64
	}
	var l []kv
	var sum uint64
	for c, n := range m {
		l = append(l, kv{c, n})
		sum += n
	}
	sort.Slice(l, func(i, j int) bool { return l[i].n > l[j].n })
	var b strings.Builder
	fmt.Fprintf(&b, "%d #VMEXITs:", sum)
	for _, e := range l {
		fmt.Fprintf(&b, " %v=%d", e.c, e.n)
	}
	return b.String()
}
