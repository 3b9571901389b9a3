package main

import (
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices/lapic"
	"github.com/doppel-ft/doppel/vmm/loader"
	"github.com/doppel-ft/doppel/vmm/netbridge"
	"github.com/doppel-ft/doppel/vmm/pc"
	"github.com/doppel-ft/doppel/vmm/svm"
)

// This file builds the protected guest as a vmguest.VM: the PC board of
// vmm/pc, guest RAM in the reserved region mapped by EPT (VT-x,
// vmm.VMXCPU vCPUs, ftguest_vmx.go) or nested page tables (AMD-V,
// svm.PCCPU vCPUs) whose D bits are the dirty log. Primary and secondary
// build the same machine (same devices in the same order, same RAM
// size); only the primary loads a kernel and starts it, the secondary
// mirrors into its RAM and starts it from a checkpoint at failover.

// ftGuestConfig describes the protected guest.
type ftGuestConfig struct {
	Kernel  []byte // nil on a secondary: the RAM is filled by the engine
	Initrd  []byte // the kernel's initrd (a Linux guest), nil for none
	Cmdline string
	MemSize uint64
	DMA     uint64 // top of the reserved region kept for the NICs (doppel.dma)
	Log     io.Writer
	// Net, if set, gives the guest a virtio-net NIC (the same on both
	// nodes, so the device lists match): its frames go through the VM's
	// Output (output commit) and the Splitter releases them to Net.
	Net *netbridge.Bridge
	// HarvestTimeout bounds a vCPU's answer to a harvest request.
	HarvestTimeout time.Duration
	// ForceScan harvests by scanning the tables' dirty flags even where
	// the CPU has PML (doppel.ept.scan, for comparisons).
	ForceScan bool
}

// ftGuest is the built guest.
type ftGuest struct {
	VM    *vmguest.VM
	Board *pc.Board
	Net   *netbridge.Bridge // nil without a NIC
	Clock *vmm.TSCClock
	lines *vmguest.LineBuffer
	stop  struct {
		sync.Mutex
		reason string
	}
	// pin and build make vCPU i on the CPU it runs on (the Machine's
	// Pin and NewCPU); pre holds vCPUs built ahead by prebuild, which
	// the vendor allows where canPrebuild.
	pin         func(i int) error
	build       func(i int) (vmguest.CPU, error)
	pre         []*prebuilt
	canPrebuild bool
}

// prebuilt is a vCPU built ahead of a takeover: done is closed once cpu
// or err is set.
type prebuilt struct {
	done chan struct{}
	cpu  vmguest.CPU
	err  error
}

// prebuild builds every vCPU now, each on the CPU it will run on, and
// keeps it for the Machine's start: a secondary calls it long before a
// takeover, which then does not wait for it (under QEMU, enabling AMD-V
// and setting up the VMCB took 14-20 ms, a tenth of a failover). The
// virtualisation state it enables is per CPU and stays on while the
// thread is unpinned; nothing else uses it on the secondary meanwhile.
// Only where the vendor's vCPU is not tied to the thread that built it
// (ftVendor.threadFree).
func (g *ftGuest) prebuild(cpus int) {
	if !g.canPrebuild {
		return
	}
	g.pre = make([]*prebuilt, cpus)
	for i := range g.pre {
		p := &prebuilt{done: make(chan struct{})}
		g.pre[i] = p
		go func() {
			defer close(p.done)
			if p.err = g.pin(i); p.err != nil {
				return
			}
			defer vmm.UnpinThread()
			p.cpu, p.err = g.build(i)
		}()
	}
}

// newCPU is the Machine's NewCPU: vCPU i as prebuild left it, or built
// now (no prebuild, or it failed).
func (g *ftGuest) newCPU(i int) (vmguest.CPU, error) {
	if i < len(g.pre) && g.pre[i] != nil {
		p := g.pre[i]
		g.pre[i] = nil // a vCPU is handed out once
		<-p.done
		if p.err == nil {
			if a, ok := p.cpu.(interface{ AdoptThread() }); ok {
				a.AdoptThread() // kicks go to this thread, which runs it
			}
			return p.cpu, nil
		}
	}
	return g.build(i)
}

// ftGuestCPUs is the protected guest's vCPU count.
const ftGuestCPUs = 1

// newFTGuest builds the guest (one vCPU) without starting it, under
// VT-x where the CPU has it usable, else AMD-V.
func newFTGuest(o ftGuestConfig) (*ftGuest, error) {
	v, err := pickFTVendor()
	if err != nil {
		return nil, err
	}
	mm, err := board.ReadMemmap()
	if err != nil {
		return nil, err
	}
	// Not the whole reserved region: its top is the NICs' DMA memory, and
	// the FT link runs over a NIC.
	res, _, err := board.SplitReserved(mm, o.DMA)
	if err != nil {
		return nil, fmt.Errorf("ft guest: %w (doppel.reserve, doppel.dma)", err)
	}
	raw, err := vmm.MapPhys(res.Start, res.Size())
	if err != nil {
		return nil, err
	}
	region, err := ept.NewRegion(res.Start, raw)
	if err != nil {
		return nil, err
	}
	hpa, err := region.AllocGuestRAM(o.MemSize, ept.LargeSize)
	if err != nil {
		return nil, fmt.Errorf("ft guest: RAM of %s: %w", board.FormatBytes(o.MemSize), err)
	}
	tables, err := v.tables(region, o.ForceScan)
	if err != nil {
		return nil, err
	}
	// 4 KiB leaves: the D bits then name single pages.
	if err := tables.Map(0, o.MemSize, hpa, ept.PermRWX, ept.MapOpt{}); err != nil {
		return nil, fmt.Errorf("ft guest: map RAM: %w", err)
	}
	b, err := region.Bytes(hpa, o.MemSize)
	if err != nil {
		return nil, err
	}
	mem := vmm.GuestMemory(b)
	// Reserved memory keeps whatever an earlier boot left there; the
	// engine's secondary starts from zeroed RAM (pages zero on the primary
	// are never sent), and a fresh guest expects it too.
	clear(mem)
	tscHz := vmm.MeasureTSCHz(20 * time.Millisecond)
	// A secondary's vCPU starts from any state: Restore overwrites it.
	state := &loader.BootState{Mode: loader.Protected32}
	if o.Kernel != nil {
		if state, err = loadFTKernel(o, v, mem, tscHz); err != nil {
			return nil, err
		}
	}
	clock := &vmm.TSCClock{Hz: tscHz, Base: cpu.RDTSC(), Read: cpu.RDTSC}
	g := &ftGuest{Clock: clock, Net: o.Net}
	crystal := vmm.CrystalFor(tscHz, lapic.DefaultBusHz)
	// The UART's output goes, in whole lines, to the VM's Output (output
	// commit); g.VM is set before the guest can run.
	g.lines = vmguest.NewLineBuffer(writerFunc(func(p []byte) (int, error) { return g.VM.Out.Write(p) }))
	g.Board, err = pc.NewBoard(pc.BoardConfig{CPUs: ftGuestCPUs, MemSize: o.MemSize, Console: g.lines,
		Clock: clock, TSCHz: tscHz, BusHz: crystal, Net: g.netConfig(),
		OnStop: func(reason string) {
			g.stop.Lock()
			if g.stop.reason == "" {
				g.stop.reason = reason
			}
			g.stop.Unlock()
			g.VM.M.Stop(nil)
		}})
	if err != nil {
		return nil, err
	}
	ncpu := runtime.NumCPU()
	var regionMu sync.Mutex
	vc := vcpuConfig{region: region, state: state, mem: mem, board: g.Board, clock: clock, tscHz: tscHz, crystal: crystal}
	// Off CPU 0, which takes every device interrupt (the I/O APIC routes
	// them there) and the threads they wake: a vCPU that shared it could
	// wait for them before it answered a kick.
	g.pin = func(i int) error { return vmm.PinThread((i + 1) % ncpu) }
	g.canPrebuild = v.threadFree()
	g.build = func(i int) (vmguest.CPU, error) {
		regionMu.Lock()
		defer regionMu.Unlock()
		return v.newCPU(i, vc)
	}
	g.VM, err = vmguest.New(vmguest.Config{
		CPUs:      ftGuestCPUs,
		Memory:    mem,
		Pin:       g.pin,
		Unpin:     vmm.UnpinThread,
		NewCPU:    g.newCPU,
		Tables:    v.scan(tables),
		HostTSC:   cpu.RDTSC,
		TSCOffset: int64(clock.Offset()),
		// A vCPU in the guest answers at its next exit, forced by a kick;
		// an emulator on a loaded host may take a while.
		HarvestTimeout: max(o.HarvestTimeout, time.Second),
	})
	if err != nil {
		return nil, err
	}
	for _, d := range g.Board.Snapshotters() {
		if err := g.VM.AddDevice(d.Name, d.State); err != nil {
			return nil, err
		}
	}
	if err := g.VM.AddDevice("console-lines", g.lines); err != nil {
		return nil, err
	}
	if g.Board.Net != nil {
		g.VM.AddQuiescer(g.Board.NetQuiescer()) // F5: arrivals held during the pause
	}
	return g, nil
}

// vcpuConfig is what a vendor needs to build a vCPU of the guest.
type vcpuConfig struct {
	region         *ept.Region
	state          *loader.BootState
	mem            vmm.GuestMemory
	board          *pc.Board
	clock          *vmm.TSCClock
	tscHz, crystal uint64
}

// ftVendor is VT-x or AMD-V: the guest-physical tables and the vCPUs.
type ftVendor interface {
	name() string
	// tables builds the guest-physical tables; forceScan keeps PML off.
	tables(r *ept.Region, forceScan bool) (*ept.Tables, error)
	// scan is the dirty-flag scan vmguest runs at a paused harvest, nil
	// where the vCPUs' own logs see every write (PML).
	scan(*ept.Tables) ept.DirtySource
	newCPU(i int, c vcpuConfig) (vmguest.CPU, error)
	// threadFree reports whether a vCPU built on one thread may run on
	// another on the same CPU (prebuild).
	threadFree() bool
}

// pickFTVendor takes VT-x if usable, else AMD-V (as pc.Run does).
func pickFTVendor() (ftVendor, error) {
	caps := vmm.ProbeCaps()
	verr := caps.Features().Usable()
	if verr == nil {
		return &vmxVendor{caps: caps}, nil
	}
	scaps := svm.ProbeCaps()
	serr := scaps.Features().Usable()
	if serr == nil {
		return &svmVendor{caps: scaps}, nil
	}
	return nil, fmt.Errorf("ft guest: neither VT-x (%v) nor AMD-V (%v)", verr, serr)
}

// restore loads a committed checkpoint into the (not started) guest: the
// devices' clock continues from the checkpoint's guest TSC, as the vCPU's
// TSC offset does (vmguest.VM.Restore), so the guest's time never goes
// backwards across the failover.
func (g *ftGuest) restore(blobs []ftmirror.Blob) error {
	s, err := vmguest.DecodeState(blobs)
	if err != nil {
		return err
	}
	g.Clock.Base = cpu.RDTSC() - s.GuestTSC
	return g.VM.Restore(blobs)
}

// stopReason is why the guest stopped itself (debug exit, reset), if it did.
func (g *ftGuest) stopReason() string {
	g.stop.Lock()
	defer g.stop.Unlock()
	return g.stop.reason
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
