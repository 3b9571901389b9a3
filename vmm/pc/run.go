package pc

import (
	"errors"
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
	"github.com/doppel-ft/doppel/vmm/netbridge"
)

// Options of Run.
type Options struct {
	Kernel  []byte
	Initrd  []byte
	Cmdline string
	CPUs    int
	MemSize uint64
	// Console receives the guest's COM1 output.
	Console io.Writer
	// Log receives doppel's own lines about the guest.
	Log io.Writer
	// RestoreTest: pause the guest this many times at random moments,
	// save it, destroy the VM, build a new one in fresh memory from the
	// snapshot and resume it.
	RestoreTest int
	// Seed of the restore test's random pauses.
	Seed uint64
	// Input, when set, is where the caller's console bytes for the guest
	// go: Run sets it to the live UART's input for the guest's lifetime.
	Input *Input
	// Requests asks the running guest for more restore cycles: each
	// request runs N cycles at random moments and answers on Done.
	Requests <-chan RestoreRequest
	// Status, when set, follows the running VM for live reports.
	Status *Status
	// NoACPI leaves out the ACPI tables: Linux then finds one CPU, the
	// PIC and PIT, and the LAPIC in virtual-wire mode.
	NoACPI bool
	// DMA is the top of the reserved region kept for the NIC drivers'
	// rings and buffers (doppel.dma, board.SplitReserved): never guest RAM.
	DMA uint64
	// Net, if set, gives the guest a virtio-net NIC on PCI bridged to a
	// doppel NIC, with the bridge's MAC. The caller starts and closes
	// the bridge; Run points its received frames at the running VM.
	Net *netbridge.Bridge
	// SVMCPU0 is the doppel.svm.cpu0 policy under AMD-V (svm.CPU0Auto
	// when empty): whether vCPUs may run on CPU 0.
	SVMCPU0 string
}

// Input forwards console bytes to the running guest's UART.
type Input struct {
	mu   sync.Mutex
	recv func(b []byte)
}

// Send gives b to the guest's COM1 receiver; without a running guest the
// bytes are dropped and false is returned.
func (in *Input) Send(b []byte) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.recv == nil {
		return false
	}
	in.recv(b)
	return true
}

// SetReceiver sets where Send delivers (nil: drop). Run sets it to the
// guest's UART; tests may stand in for it.
func (in *Input) SetReceiver(f func([]byte)) { in.set(f) }

// Attach delivers to b's UART with the back-pressure Run gives its own
// guests (a guest board built without Run, such as the protected guest).
func (in *Input) Attach(b *Board) { in.set((&inputQueue{b: b}).add) }

func (in *Input) set(f func([]byte)) {
	if in == nil {
		return
	}
	in.mu.Lock()
	in.recv = f
	in.mu.Unlock()
}

// restoreGap is the random wait before a restore-test cycle: 0.5-2 s, so
// that cycles land at different points of the guest's work and five of
// them fit in a short workload under an emulator.
func restoreGap(rng *rand.Rand) time.Duration {
	return time.Duration(500+rng.IntN(1500)) * time.Millisecond
}

// RestoreRequest asks for N save/destroy/restore cycles; the cycles done
// (and an error if they stopped early) come back on Done.
type RestoreRequest struct {
	N    int
	Done chan<- RestoreResult
}

// RestoreResult answers a RestoreRequest.
type RestoreResult struct {
	Cycles []RestoreCycle
	Err    error
}

// Report says how a guest run ended.
type Report struct {
	Reason     string // why the guest stopped
	Err        error  // an error that stopped it (unhandled exit, triple fault, ...)
	ExitStatus uint64 // the debug-exit status, 0 if none
	Exits      [][vmm.NumExitReasons]uint64
	Injected   []uint64
	Halts      []uint64
	MSRFaults  []uint64
	MMIO       []uint64
	// LastExits says, per vCPU, the reason and guest RIP of its latest
	// exit (Status.Live only).
	LastExits []string
	// Times splits each vCPU thread's time (host TSC ticks, at TSCHz).
	Times    []vmm.VCPUTimes
	TSCHz    uint64
	Restores []RestoreCycle
	Runtime  time.Duration
	// Dirty counts the pages the guest wrote, and says how they were
	// found (PML or a scan of the EPT dirty flags).
	Dirty DirtyReport
}

// RestoreCycle is one save/destroy/restore of the restore test.
type RestoreCycle struct {
	Bytes         int
	Save, Restore time.Duration
	// Dirty is the number of pages the guest wrote since the previous
	// cycle (or its start).
	Dirty uint64
}

// TimeSummary says where vCPU i's thread spent its time: in the guest
// (VM entry to exit, which includes host interrupts taken right after an
// exit), halted, in the rest of its steps (exit handling and whatever the
// host ran on that CPU meanwhile), all in seconds of the host TSC.
func (r *Report) TimeSummary(i int) string {
	if i >= len(r.Times) || r.TSCHz == 0 {
		return ""
	}
	t := r.Times[i]
	sec := func(v uint64) float64 { return float64(v) / float64(r.TSCHz) }
	return fmt.Sprintf("in guest %.3f s, halted %.3f s, exits and the rest of its steps %.3f s",
		sec(t.Guest), sec(t.Halt), sec(t.Step-min(t.Step, t.Guest+t.Halt)))
}

// ExitSummary lists the exits by reason, most frequent first.
func (r *Report) ExitSummary() string {
	var total [vmm.NumExitReasons]uint64
	for _, c := range r.Exits {
		for i, n := range c {
			total[i] += n
		}
	}
	type kv struct {
		r vmm.ExitReasonBasic
		n uint64
	}
	var list []kv
	var sum uint64
	for i, n := range total {
		if n > 0 {
			list = append(list, kv{vmm.ExitReasonBasic(i), n})
			sum += n
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].n > list[j].n })
	var b strings.Builder
	fmt.Fprintf(&b, "%d exits:", sum)
	for _, e := range list {
		fmt.Fprintf(&b, " %v=%d", e.r, e.n)
	}
	return b.String()
}

// Status reports on a running guest from another goroutine.
type Status struct {
	mu  sync.Mutex
	cur *vm
	rep *Report
}

func (s *Status) set(v *vm, r *Report) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.cur, s.rep = v, r
	s.mu.Unlock()
}

// Live returns the exit counts so far (of this VM and the ones the
// restore test destroyed). The counters are read while the vCPUs run:
// a report, not a synchronised snapshot.
func (s *Status) Live() (*Report, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil, false
	}
	r := &Report{Restores: s.rep.Restores}
	for i := range s.rep.Exits {
		r.Exits = append(r.Exits, s.rep.Exits[i])
		r.Injected = append(r.Injected, s.rep.Injected[i])
		r.Halts = append(r.Halts, s.rep.Halts[i])
		r.MSRFaults = append(r.MSRFaults, s.rep.MSRFaults[i])
		r.MMIO = append(r.MMIO, s.rep.MMIO[i])
		r.Times = append(r.Times, s.rep.Times[i])
	}
	r.TSCHz = s.rep.TSCHz
	r.addCounts(s.cur)
	for _, c := range s.cur.cpus {
		if c == nil {
			r.LastExits = append(r.LastExits, "not started")
			continue
		}
		reason, rip := c.LastExit()
		r.LastExits = append(r.LastExits, fmt.Sprintf("%v at rip %#x", reason, rip))
	}
	return r, true
}

// ErrNoVT is wrapped when VT-x is missing or off.
var ErrNoVT = errors.New("pc: no usable VT-x")

// lazyInvept invalidates nothing before the guest first runs (the tables
// were never used, and no CPU is in VMX operation yet to run INVEPT).
type lazyInvept struct{ on bool }

func (l *lazyInvept) InvalidateSingleContext(eptp uint64) error {
	if !l.on {
		return nil
	}
	return vmm.Invept{}.InvalidateSingleContext(eptp)
}

// space is one guest RAM block with the EPT tables mapping it.
type space struct {
	mem    vmm.GuestMemory
	tables *ept.Tables
}

// host is what every machine of one Run shares: the reserved region and
// the VMX capabilities.
type host struct {
	caps   vmm.Caps
	region *ept.Region
	mu     sync.Mutex // region allocations from vCPU threads
	tscHz  uint64
	ncpu   int
	dirty  DirtyMode
	// vpid is the next VPID: every machine gets fresh ones, so no TLB
	// entry of a destroyed machine can match (SDM Vol. 3C 29.1).
	vpid uint16
}

func (h *host) newSpace(size uint64) (*space, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hpa, err := h.region.AllocGuestRAM(size, ept.LargeSize)
	if err != nil {
		return nil, fmt.Errorf("pc: guest RAM of %s: %w", board.FormatBytes(size), err)
	}
	t, err := ept.New(h.region, &lazyInvept{}, ept.Options{AccessedDirty: h.caps.Features().EPTAccessedDirty})
	if err != nil {
		return nil, err
	}
	if err := t.Map(0, size, hpa, ept.PermRWX, ept.MapOpt{}); err != nil {
		return nil, err
	}
	b, err := h.region.Bytes(hpa, size)
	if err != nil {
		return nil, err
	}
	return &space{mem: vmm.GuestMemory(b), tables: t}, nil
}

// vm is one machine built over a space.
type vm struct {
	m     *vmm.Machine
	board *Board
	cpus  []*vmm.VMXCPU
	clock *vmm.TSCClock
	dirty *dirtyTracker
	stop  string
	mu    sync.Mutex
}

// Run boots the kernel as a PC guest under VT-x and returns when the
// guest stopped (powered off, reset, wrote the debug-exit port, halted
// for good, or failed). Bare metal only.
func Run(o Options) (*Report, error) {
	if o.CPUs < 1 {
		o.CPUs = 1
	}
	caps := vmm.ProbeCaps()
	if err := caps.Features().Usable(); err != nil {
		if scaps, serr := svmUsable(); serr == nil {
			return runSVM(o, scaps) // AMD-V (svm.go)
		}
		return nil, fmt.Errorf("%v: %w", err, ErrNoVT)
	}
	h := &host{caps: caps, ncpu: runtime.NumCPU(), dirty: dirtyModeOf(caps.Features())}
	if o.CPUs > h.ncpu {
		return nil, fmt.Errorf("pc: %d vCPUs need as many host CPUs, there are %d", o.CPUs, h.ncpu)
	}
	mm, err := board.ReadMemmap()
	if err != nil {
		return nil, err
	}
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
	var tables []byte
	if !o.NoACPI {
		t, err := ACPITablesFor(o.CPUs, o.Net != nil)
		if err != nil {
			return nil, err
		}
		if err := sp.mem.Write(t.Base, t.Bytes); err != nil {
			return nil, fmt.Errorf("pc: ACPI tables: %w", err)
		}
		layout.RSDP, tables = t.RSDP, t.Bytes
	}
	state, kind, err := loader.Load(loader.Flat(sp.mem), loader.Config{Layout: layout, Kernel: o.Kernel, Cmdline: o.Cmdline, Initrd: o.Initrd})
	if err != nil {
		return nil, fmt.Errorf("pc: load kernel: %w", err)
	}
	h.tscHz = vmm.MeasureTSCHz(20 * time.Millisecond)
	fmt.Fprintf(o.Log, "%v kernel, %d vCPUs, %s RAM, TSC %d kHz, entry %#x (%v), ACPI tables %d bytes, dirty pages by %v\n",
		kind, o.CPUs, board.FormatBytes(o.MemSize), h.tscHz/1000, state.RIP, state.Mode, len(tables), h.dirty)
	clock := &vmm.TSCClock{Hz: h.tscHz, Base: cpu.RDTSC(), Read: cpu.RDTSC}
	start := time.Now()
	cur, err := h.build(o, sp, state, clock, nil)
	if err != nil {
		return nil, err
	}
	if o.Net != nil {
		defer o.Net.SetDeliver(nil)
	}
	rep := &Report{TSCHz: h.tscHz}
	o.Status.set(cur, rep)
	defer o.Status.set(nil, nil)
	var other *space
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9E37_79B9_7F4A_7C15))
	// cycle saves the running guest, destroys its VM and resumes it in a
	// new one in the other memory space.
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
		// Guest memory is saved straight into the fresh space (the
		// host's heap may be smaller than the guest's RAM); the vCPU and
		// device state goes through its encoding.
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
		rep.addCounts(cur)
		dirty, err := cur.dirty.finish()
		if err != nil {
			return RestoreCycle{}, err
		}
		rep.Dirty.add(dirty)
		// The new VM: fresh memory, fresh tables, fresh devices and
		// vCPUs, everything from the encoded snapshot.
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
		o.Status.set(cur, rep)
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
			fmt.Fprintf(o.Log, "restore test: cycle %d/%d: saved %s in %v, restored in fresh memory in %v; %d pages written since the last cycle (%v)\n",
				i+1, n, board.FormatBytes(uint64(c.Bytes)), c.Save.Round(time.Microsecond), c.Restore.Round(time.Microsecond), c.Dirty, h.dirty)
		}
		return done, nil
	}
	if o.RestoreTest > 0 {
		if _, err := runCycles(o.RestoreTest); err != nil {
			fmt.Fprintf(o.Log, "restore test: %v\n", err)
		}
	}
	for stopped := false; !stopped; {
		select {
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
	rep.addCounts(cur)
	dirty, err := cur.dirty.finish()
	if err != nil && rep.Err == nil {
		rep.Err = err
	}
	rep.Dirty.add(dirty)
	cur.mu.Lock()
	rep.Reason = cur.stop
	cur.mu.Unlock()
	rep.ExitStatus = cur.board.ExitStatus
	if rep.Reason == "" && rep.Err == nil {
		rep.Reason = "stopped"
	}
	return rep, nil
}

func (r *Report) addCounts(v *vm) {
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
			r.Times = append(r.Times, vmm.VCPUTimes{})
		}
		for j, n := range c.V.Counts {
			r.Exits[i][j] += n
		}
		r.Injected[i] += c.Injected()
		r.Halts[i] += c.Halts
		r.MSRFaults[i] += c.V.MSRFaults
		r.MMIO[i] += c.V.MMIOExits
		t := c.Times()
		r.Times[i].Guest += t.Guest
		r.Times[i].Halt += t.Halt
		r.Times[i].Step += t.Step
	}
}

// build makes a machine over sp: from the loader's start state, or from
// a snapshot (then state is nil), and starts it.
func (h *host) build(o Options, sp *space, state *loader.BootState, clock *vmm.TSCClock, snap *vmm.Snapshot) (*vm, error) {
	v := &vm{clock: clock, cpus: make([]*vmm.VMXCPU, o.CPUs), dirty: newDirtyTracker(h.dirty, sp.tables, o.MemSize)}
	vpid0 := h.vpid + 1
	h.vpid += uint16(o.CPUs)
	var err error
	crystal := vmm.CrystalFor(h.tscHz, lapic.DefaultBusHz)
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
	proc2 := uint32(h.caps.Proc2 >> 32) // allowed-1 settings (App. A.3.3)
	view := vmm.NewCPUIDView(vmm.CPUIDConfig{
		Host: cpu.CPUID, CPUs: o.CPUs, TSCHz: h.tscHz, CrystalHz: crystal,
		RDTSCP:      proc2&vmm.Proc2EnableRDTSCP != 0,
		INVPCID:     proc2&vmm.Proc2EnableINVPCID != 0,
		TSCDeadline: true,
		// x87 to AVX-512, as far as this CPU has them: the vCPUs switch
		// them with XSAVE (vmm/xsave.go).
		XCR0: vmm.SwitchableXCR0(cpu.CPUID),
	})
	v.m, err = vmm.NewMachine(vmm.MachineConfig{
		CPUs:   o.CPUs,
		Memory: sp.mem,
		Pin:    func(i int) error { return vmm.PinThread(i % h.ncpu) },
		Unpin:  vmm.UnpinThread,
		NewCPU: func(i int) (vmm.CPU, error) {
			h.mu.Lock()
			x, err := vmm.Enable(h.caps, h.region)
			h.mu.Unlock()
			if err != nil {
				return nil, err
			}
			// The space may have carried an earlier VM (the restore
			// test): drop this CPU's cached translations of it, whose
			// dirty flags were since cleared.
			if err := (vmm.Invept{}).InvalidateSingleContext(sp.tables.EPTP()); err != nil {
				x.Disable()
				return nil, err
			}
			var log *pmlLog
			if h.dirty == DirtyPML {
				h.mu.Lock()
				log, err = v.dirty.newLog(h.region)
				h.mu.Unlock()
				if err != nil {
					x.Disable()
					return nil, err
				}
			}
			var start *loader.BootState
			if i == 0 {
				start = state
			}
			if start == nil && i == 0 && snap == nil {
				return nil, fmt.Errorf("pc: no start state")
			}
			if snap != nil && i == 0 {
				// Any start state does: Restore overwrites it, but the
				// boot vCPU must not wait for SIPI.
				start = &loader.BootState{Mode: loader.Protected32}
			}
			cfg := vmm.VMXCPUConfig{
				VMX: x, Frames: h.region, Index: i, EPTP: sp.tables.EPTP(), VPID: vpid0 + uint16(i),
				Start: start, Mem: sp.mem, Ports: v.board.Ports, MMIO: v.board.MMIO[i],
				Devices: &v.board.Devices, Source: v.board.Source(i), APIC: v.board.LAPICs[i],
				SIPI: v.board.LAPICs[i], TPR: v.board.LAPICs[i], Timers: v.board.Timers(i),
				Clock: clock, View: view, Wake: v.board.Wake[i],
			}
			if log != nil {
				cfg.PMLAddr, cfg.OnPMLFull = log.pa, func() error { return log.drain(true) }
			}
			h.mu.Lock()
			c, err := vmm.NewVMXCPU(cfg)
			h.mu.Unlock()
			if err != nil {
				x.Disable()
				return nil, err
			}
			v.cpus[i] = c
			return &vmxOn{c, x, log}, nil
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
	q := &inputQueue{b: v.board}
	o.Input.set(q.add)
	if err := v.m.Start(); err != nil {
		return nil, err
	}
	return v, nil
}

// inputQueue feeds console input to the UART with back-pressure: what
// does not fit in its receive FIFO waits and is offered again every
// inputRetry, so fast typing (or a test) loses nothing.
type inputQueue struct {
	mu      sync.Mutex
	b       *Board
	pending []byte
	timer   *time.Timer
}

const inputRetry = 2 * time.Millisecond

func (q *inputQueue) add(p []byte) {
	q.mu.Lock()
	q.pending = append(q.pending, p...)
	q.mu.Unlock()
	q.pump()
}

func (q *inputQueue) pump() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.timer = nil
	if len(q.pending) == 0 {
		return
	}
	q.b.Devices.Lock()
	n := q.b.UART.Enqueue(q.pending)
	q.b.Devices.Unlock()
	q.pending = q.pending[n:]
	if n > 0 {
		q.b.wakeAll()
	}
	if len(q.pending) > 0 {
		q.timer = time.AfterFunc(inputRetry, q.pump)
	}
}

// vmxOn is a VMXCPU that also leaves VMX operation on its CPU when the
// machine ends, after draining its PML log (log nil: no PML).
type vmxOn struct {
	*vmm.VMXCPU
	x   *vmm.VMX
	log *pmlLog
}

func (c *vmxOn) Close() error {
	var err error
	if c.log != nil {
		err = c.log.drain(false) // while its VMCS is still current
	}
	return errors.Join(err, c.VMXCPU.Close(), c.x.Disable())
}
