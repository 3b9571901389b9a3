package pc

import (
	"fmt"
	"io"
	"math/rand/v2"
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

// svmHost is what every machine of one AMD-V run shares: the reserved
// region and the SVM capabilities.
type svmHost struct {
	caps   svm.Caps
	region *ept.Region
	mu     sync.Mutex // region allocations from vCPU threads
	tscHz  uint64
	ncpu   int
	place  svm.Placement // which CPUs run the vCPUs
}

// svmSpace is one guest RAM block with the nested tables mapping it, and
// the vCPUs whose ASIDs must be flushed when the tables change.
type svmSpace struct {
	mem    vmm.GuestMemory
	tables *ept.Tables
	inv    *nptInvalidator
}

// newSpace allocates guest RAM and maps it with nested tables, checked to
// reach that RAM and nothing else.
func (h *svmHost) newSpace(size uint64) (*svmSpace, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hpa, err := h.region.AllocGuestRAM(size, ept.LargeSize)
	if err != nil {
		return nil, fmt.Errorf("pc: guest RAM of %s: %w", board.FormatBytes(size), err)
	}
	inv := &nptInvalidator{}
	tables, err := ept.New(h.region, inv, ept.Options{Nested: true})
	if err != nil {
		return nil, fmt.Errorf("pc: nested tables: %w", err)
	}
	if err := tables.Map(0, size, hpa, ept.PermRWX, ept.MapOpt{}); err != nil {
		return nil, fmt.Errorf("pc: map guest RAM: %w", err)
	}
	// The guest writes what its nested tables map without an exit: they
	// must reach its RAM block and nothing else (no identity-mapped or
	// stray range over doppel's own memory).
	if n, err := tables.CheckConfined(hpa, hpa+size); err != nil || n != size {
		return nil, fmt.Errorf("pc: nested tables map %d bytes, want %d inside [%#x, %#x): %v", n, size, hpa, hpa+size, err)
	}
	b, err := h.region.Bytes(hpa, size)
	if err != nil {
		return nil, err
	}
	return &svmSpace{mem: vmm.GuestMemory(b), tables: tables, inv: inv}, nil
}

// svmVM is one machine built over a space.
type svmVM struct {
	m     *vmm.Machine
	board *Board
	cpus  []*svm.PCCPU
	dirty *dirtyTracker
	stop  string
	mu    sync.Mutex
}

// runSVM is Run under AMD-V, with the restore test and restore requests
// as under VT-x: the written pages come from a scan of the nested tables'
// dirty flags (NPT has no PML).
func runSVM(o Options, caps svm.Caps) (*Report, error) {
	if o.CPUs < 1 {
		o.CPUs = 1
	}
	h := &svmHost{caps: caps, ncpu: runtime.NumCPU()}
	policy := o.SVMCPU0
	if policy == "" {
		policy = svm.CPU0Auto
	}
	var err error
	if h.place, err = svm.PlaceVCPUs(policy, h.ncpu, cpu.CPUID); err != nil {
		return nil, fmt.Errorf("pc: %w", err)
	}
	if n := h.place.HostCPUs(h.ncpu); o.CPUs > n {
		if h.place.AvoidCPU0 {
			return nil, fmt.Errorf("pc: %d vCPUs need as many host CPUs besides CPU 0, there are %d (%s)", o.CPUs, n, h.place.Reason)
		}
		return nil, fmt.Errorf("pc: %d vCPUs need as many host CPUs, there are %d", o.CPUs, n)
	}
	fmt.Fprintf(o.Log, "AMD-V: vCPU placement: %s\n", h.place.Reason)
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
	if h.region, err = ept.NewRegion(res.Start, raw); err != nil {
		return nil, err
	}
	sp, err := h.newSpace(o.MemSize)
	if err != nil {
		return nil, err
	}
	layout := loader.NewPCLayout(o.MemSize)
	var acpiBytes []byte
	if !o.NoACPI {
		t, err := ACPITablesFor(o.CPUs, o.Net != nil)
		if err != nil {
			return nil, err
		}
		if err := sp.mem.Write(t.Base, t.Bytes); err != nil {
			return nil, fmt.Errorf("pc: ACPI tables: %w", err)
		}
		layout.RSDP, acpiBytes = t.RSDP, t.Bytes
	}
	h.tscHz = vmm.MeasureTSCHz(20 * time.Millisecond)
	cmdline := o.Cmdline
	if k, err := loader.Detect(o.Kernel); err == nil {
		var added bool
		if cmdline, added = withTSCRate(k, cmdline, h.tscHz); added {
			fmt.Fprintf(o.Log, "AMD-V: the guest kernel's command line gets %s%d (Linux reads the TSC rate from CPUID 0x15 only on Intel)\n", tscKHzParam, h.tscHz/1000)
		}
	}
	state, kind, err := loader.Load(loader.Flat(sp.mem), loader.Config{Layout: layout, Kernel: o.Kernel, Cmdline: cmdline, Initrd: o.Initrd})
	if err != nil {
		return nil, fmt.Errorf("pc: load kernel: %w", err)
	}
	fmt.Fprintf(o.Log, "AMD-V: %v kernel, %d vCPUs, %s RAM, TSC %d kHz, entry %#x (%v), ACPI tables %d bytes, NRIP save %v, decode assists %v\n",
		kind, o.CPUs, board.FormatBytes(o.MemSize), h.tscHz/1000, state.RIP, state.Mode, len(acpiBytes),
		caps.Features().NRIPS, caps.Features().DecodeAssists)
	clock := &vmm.TSCClock{Hz: h.tscHz, Base: cpu.RDTSC(), Read: cpu.RDTSC}
	start := time.Now()
	if o.Net != nil {
		defer o.Net.SetDeliver(nil)
	}
	cur, err := h.build(o, sp, state, clock, nil)
	if err != nil {
		return nil, err
	}
	rep := &Report{TSCHz: h.tscHz}
	var other *svmSpace
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9E37_79B9_7F4A_7C15))
	// cycle saves the running guest, destroys its VM and resumes it in a
	// new one in the other memory space, as under VT-x (run.go).
	cycle := func() (RestoreCycle, error) {
		if other == nil {
			var err error
			if other, err = h.newSpace(o.MemSize); err != nil {
				return RestoreCycle{}, err
			}
		}
		t0 := time.Now()
		if err := cur.m.Pause(); err != nil {
			return RestoreCycle{}, err // it stopped meanwhile
		}
		snap, err := cur.m.SaveTo(other.mem)
		if err != nil {
			cur.m.Stop(fmt.Errorf("restore test: save: %w", err))
			return RestoreCycle{}, err
		}
		blob := snap.EncodeState()
		tSave := time.Since(t0)
		o.Input.set(nil)
		cur.m.Stop(nil)
		cur.m.Wait()
		cur.addCounts(rep)
		dirty, err := cur.dirty.finish()
		if err != nil {
			return RestoreCycle{}, err
		}
		rep.Dirty.add(dirty)
		t1 := time.Now()
		back, err := vmm.DecodeSnapshot(blob)
		if err != nil {
			return RestoreCycle{}, err
		}
		back.Memory = snap.Memory
		next, err := h.build(o, other, nil, clock, back)
		if err != nil {
			return RestoreCycle{}, fmt.Errorf("rebuild: %w", err)
		}
		c := RestoreCycle{Bytes: len(blob) + len(snap.Memory), Save: tSave, Restore: time.Since(t1), Dirty: dirty.Pages}
		rep.Restores = append(rep.Restores, c)
		sp, other, cur = other, sp, next
		return c, nil
	}
	// runCycles runs n cycles, each after a random restoreGap.
	runCycles := func(n int) ([]RestoreCycle, error) {
		var done []RestoreCycle
		for i := 0; i < n; i++ {
			select {
			case <-cur.m.Done():
				return done, fmt.Errorf("the guest stopped")
			case <-time.After(restoreGap(rng)):
			}
			c, err := cycle()
			if err != nil {
				return done, err
			}
			done = append(done, c)
			fmt.Fprintf(o.Log, "restore test: cycle %d/%d: saved %s in %v, restored in fresh memory in %v; %d pages written since the last cycle (scan of the NPT dirty flags)\n",
				i+1, n, board.FormatBytes(uint64(c.Bytes)), c.Save.Round(time.Microsecond), c.Restore.Round(time.Microsecond), c.Dirty)
		}
		return done, nil
	}
	if o.RestoreTest > 0 {
		if _, err := runCycles(o.RestoreTest); err != nil {
			fmt.Fprintf(o.Log, "restore test: %v\n", err)
		}
	}
	// A line every 10 s while the guest runs: how far each vCPU got.
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	for stopped := false; !stopped; {
		select {
		case <-progress.C:
			cur.logProgress(o.Log)
		case <-cur.m.Done():
			stopped = true
		case req := <-o.Requests:
			cs, err := runCycles(req.N)
			req.Done <- RestoreResult{Cycles: cs, Err: err}
		}
	}
	rep.Err = cur.m.Wait()
	o.Input.set(nil)
	rep.Runtime = time.Since(start)
	cur.addCounts(rep)
	dirty, err := cur.dirty.finish()
	if err != nil && rep.Err == nil {
		rep.Err = err
	}
	rep.Dirty.add(dirty)
	for i, c := range cur.cpus {
		if c != nil {
			fmt.Fprintf(o.Log, "AMD-V vcpu %d: %s; %d instructions decoded for their length\n", i, svmExitSummary(c.S.Counts), c.S.Decoded)
		}
	}
	cur.mu.Lock()
	rep.Reason = cur.stop
	cur.mu.Unlock()
	rep.ExitStatus = cur.board.ExitStatus
	if rep.Reason == "" && rep.Err == nil {
		rep.Reason = "stopped"
	}
	return rep, nil
}

// build makes a machine over sp, from the loader's start state or from a
// snapshot (then state is nil), and starts it.
func (h *svmHost) build(o Options, sp *svmSpace, state *loader.BootState, clock *vmm.TSCClock, snap *vmm.Snapshot) (*svmVM, error) {
	v := &svmVM{cpus: make([]*svm.PCCPU, o.CPUs), dirty: newDirtyTracker(DirtyScan, sp.tables, uint64(len(sp.mem)))}
	// A space that carried an earlier VM: its vCPUs are gone.
	sp.inv.mu.Lock()
	sp.inv.hws = nil
	sp.inv.mu.Unlock()
	crystal := vmm.CrystalFor(h.tscHz, lapic.DefaultBusHz)
	var err error
	v.board, err = NewBoard(BoardConfig{CPUs: o.CPUs, MemSize: o.MemSize, Console: o.Console, Clock: clock, TSCHz: h.tscHz, BusHz: crystal,
		Net: netConfig(o.Net, sp.mem),
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
	view := vmm.NewCPUIDView(vmm.CPUIDConfig{Host: cpu.CPUID, CPUs: o.CPUs, TSCHz: h.tscHz, CrystalHz: crystal, TSCDeadline: true})
	v.m, err = vmm.NewMachine(vmm.MachineConfig{
		CPUs:   o.CPUs,
		Memory: sp.mem,
		Pin:    func(i int) error { return vmm.PinThread(h.place.CPU(i, h.ncpu)) },
		Unpin:  vmm.UnpinThread,
		NewCPU: func(i int) (vmm.CPU, error) {
			var st *loader.BootState
			if i == 0 {
				st = state
				if snap != nil {
					// Any start state does: Restore overwrites it, but
					// the boot vCPU must not wait for SIPI.
					st = &loader.BootState{Mode: loader.Protected32}
				}
				if st == nil {
					return nil, fmt.Errorf("pc: no start state")
				}
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			s, err := svm.Enable(h.caps, h.region)
			if err != nil {
				return nil, fmt.Errorf("pc: enable SVM on vcpu %d: %w", i, err)
			}
			c, err := svm.NewPCCPU(svm.PCConfig{
				SVM: s, Index: i, NCR3: sp.tables.NCR3(), Start: st, Mem: sp.mem,
				Ports: v.board.Ports, MMIO: v.board.MMIO[i], Devices: &v.board.Devices,
				Source: v.board.Source(i), APIC: v.board.LAPICs[i], SIPI: v.board.LAPICs[i], TPR: v.board.LAPICs[i],
				Timers: v.board.Timers(i), Clock: clock, View: view, Wake: v.board.Wake[i],
			})
			if err != nil {
				s.Disable()
				return nil, fmt.Errorf("pc: vcpu %d: %w", i, err)
			}
			sp.inv.mu.Lock()
			sp.inv.hws = append(sp.inv.hws, c.HW)
			sp.inv.mu.Unlock()
			v.cpus[i] = c
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
	if snap != nil {
		if err := v.m.Restore(snap); err != nil {
			return nil, err
		}
	}
	if o.Net != nil {
		o.Net.SetDeliver(v.board.NetReceive) // the restore test's new VM takes over
	}
	// Console input with back-pressure, as under VT-x: what does not fit
	// in the UART's FIFO waits (typing into a busy 2-vCPU guest lost 16
	// bytes at a time with Receive).
	q := &inputQueue{b: v.board}
	o.Input.set(q.add)
	if err := v.m.Start(); err != nil {
		return nil, err
	}
	return v, nil
}

// addCounts adds the VM's per-vCPU counts to r.
func (v *svmVM) addCounts(r *Report) {
	for i, c := range v.cpus {
		if c == nil {
			continue
		}
		if len(r.Exits) <= i {
			r.Exits = append(r.Exits, [vmm.NumExitReasons]uint64{})
			r.Injected = append(r.Injected, 0)
			r.Halts = append(r.Halts, 0)
			r.MSRFaults = append(r.MSRFaults, 0)
			r.MMIO = append(r.MMIO, 0)
		}
		for j, n := range c.V.Counts {
			r.Exits[i][j] += n
		}
		r.Injected[i] += c.Injected()
		r.Halts[i] += c.Halts
		r.MSRFaults[i] += c.V.MSRFaults
		r.MMIO[i] += c.V.MMIOExits
	}
}

// logProgress writes how far each vCPU got (racy reads of the VMCB, for
// the log line only).
func (v *svmVM) logProgress(w io.Writer) {
	for i, c := range v.cpus {
		if c != nil {
			n, code, rip := c.Progress()
			vm := c.HW.VMCB
			l := v.board.LAPICs[i]
			fmt.Fprintf(w, "AMD-V vcpu %d: %d #VMEXITs so far, last %v at rip %#x; injected %d, halts %d, rflags %#x, V_INTR %#x, EVENTINJ %#x, shadow %#x, interrupt pending %v; LAPIC IRR %v ISR %v ExtINT %v\n",
				i, n, code, rip, c.Injected(), c.Halts, vm.Get64(svm.SaveRFLAGS), vm.Get64(svm.VIntr), vm.Get64(svm.EventInj), vm.Get64(svm.InterruptShadow),
				v.board.Source(i).InterruptPending(), apicVectors(l, 0x200), apicVectors(l, 0x100), l.ExtINTPending())
		}
	}
	v.board.Devices.Lock()
	fmt.Fprintf(w, "AMD-V board: UART irq %v, %d overruns; PIC INTR %v\n", v.board.UART.Interrupt(), v.board.UART.Overruns, v.board.PIC.Interrupt())
	v.board.Devices.Unlock()
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
