package main

import (
	"fmt"
	"sync"

	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/vmm"
)

// vmxVendor builds EPT tables and vmm.VMXCPU vCPUs. The dirty log is the
// EPT D bits (A/D enabled, SDM Vol. 3C 29.3.5). Where the CPU has PML
// (29.3.6) each vCPU logs its own writes and drains the log at every exit
// where vmguest asks (HarvestOnCPU) and when it fills: the harvest's cost
// follows the pages written, and the paused checkpoint scans nothing.
// Without PML (or with doppel.ept.scan=1) vmguest scans the D bits with
// every vCPU held at an exit.
type vmxVendor struct {
	caps vmm.Caps
	tbl  *ept.Tables
	vpid uint16
	pml  bool
	// drainMu serialises the vCPUs' PML drains: they share the tables'
	// page-table index (ept.Tables.DrainPML).
	drainMu sync.Mutex
}

func (v *vmxVendor) name() string { return "VT-x" }

// threadFree implements ftVendor: no, the VMCS's host-state fields hold
// the building thread's FS and GS bases (its Go TLS), which every VM exit
// loads (vmm/vmcs_setup.go); on another thread that crashed the runtime.
func (v *vmxVendor) threadFree() bool { return false }

// noInvept is the tables' invalidator: INVEPT flushes only the CPU that
// runs it, and the scan runs on the engine's CPU, which need not be in
// VMX operation at all (INVEPT would fault there). vmguest has every
// vCPU flush its own CPU (FlushOnCPU) before it enters the guest again
// after a scan, which is the flush that matters; the tables change in no
// other way after the guest is built.
type noInvept struct{}

func (noInvept) InvalidateSingleContext(uint64) error { return nil }

// scan implements ftVendor: nothing with PML, else the D-bit scan.
func (v *vmxVendor) scan(t *ept.Tables) ept.DirtySource {
	if v.pml {
		return nil
	}
	return ept.ScanSource{T: t}
}

func (v *vmxVendor) tables(r *ept.Region, forceScan bool) (*ept.Tables, error) {
	if !v.caps.Features().EPTAccessedDirty {
		return nil, fmt.Errorf("ft guest: the CPU's EPT has no accessed/dirty flags: no dirty log")
	}
	t, err := ept.New(r, noInvept{}, ept.Options{AccessedDirty: true})
	if err != nil {
		return nil, fmt.Errorf("ft guest: EPT: %w", err)
	}
	v.tbl = t
	v.pml = v.caps.Features().PML && !forceScan
	return t, nil
}

func (v *vmxVendor) newCPU(i int, vc vcpuConfig) (vmguest.CPU, error) {
	x, err := vmm.Enable(v.caps, vc.region)
	if err != nil {
		return nil, fmt.Errorf("ft guest: enable VMX: %w", err)
	}
	proc2 := uint32(v.caps.Proc2 >> 32) // allowed-1 settings (SDM App. A.3.3)
	view := vmm.NewCPUIDView(vmm.CPUIDConfig{Host: cpu.CPUID, CPUs: ftGuestCPUs, TSCHz: vc.tscHz, CrystalHz: vc.crystal,
		RDTSCP: proc2&vmm.Proc2EnableRDTSCP != 0, INVPCID: proc2&vmm.Proc2EnableINVPCID != 0, TSCDeadline: true})
	v.vpid++
	b := vc.board
	cfg := vmm.VMXCPUConfig{
		VMX: x, Frames: vc.region, Index: i, EPTP: v.tbl.EPTP(), VPID: v.vpid,
		Start: vc.state, Mem: vc.mem, Ports: b.Ports, MMIO: b.MMIO[i],
		Devices: &b.Devices, Source: b.Source(i), APIC: b.LAPICs[i],
		SIPI: b.LAPICs[i], TPR: b.LAPICs[i], Timers: b.Timers(i),
		Clock: vc.clock, View: view, Wake: b.Wake[i],
	}
	var log *pmlLog
	if v.pml {
		pa, err := vc.region.AllocTable()
		if err != nil {
			x.Disable()
			return nil, fmt.Errorf("ft guest: vcpu %d: PML log: %w", i, err)
		}
		log = &pmlLog{v: v, log: vc.region.Table(pa), acc: ept.NewBitmap(uint64(len(vc.mem)) / ept.PageSize)}
		cfg.PMLAddr, cfg.OnPMLFull = pa, log.drain
	}
	c, err := vmm.NewVMXCPU(cfg)
	if err != nil {
		x.Disable()
		return nil, fmt.Errorf("ft guest: vcpu %d: %w", i, err)
	}
	if log != nil {
		log.vmcs = c.HW.VMCS
	}
	return &vmxFTCPU{VMXCPU: c, x: x, eptp: v.tbl.EPTP(), pml: log}, nil
}

// pmlLog is one vCPU's page-modification log and the pages drained from
// it since its last HarvestOnCPU; used only on the vCPU's own thread.
type pmlLog struct {
	v    *vmxVendor
	log  *[ept.PMLEntries]uint64
	vmcs vmm.HWVMCS
	acc  *ept.Bitmap
}

// drain moves the logged pages into acc, clears their D bits (so their
// next write is logged again), drops this CPU's cached translations with
// INVEPT and resets the index (SDM Vol. 3C 29.3.6). It is the PML-full
// exit's handler too.
func (l *pmlLog) drain() error {
	err := l.vmcs.DrainPMLLog(l.v.tbl.EPTP(), func(idx uint16) error {
		l.v.drainMu.Lock()
		defer l.v.drainMu.Unlock()
		_, err := l.v.tbl.DrainPML(l.log, idx, l.acc)
		return err
	})
	if err != nil {
		return fmt.Errorf("ft guest: %w", err)
	}
	return nil
}

// vmxFTCPU is a VMXCPU with the per-vCPU hooks vmguest needs; each runs
// on the vCPU's own CPU, where its VMCS is current.
type vmxFTCPU struct {
	*vmm.VMXCPU
	x    *vmm.VMX
	eptp uint64
	pml  *pmlLog // nil without PML
}

// HarvestOnCPU implements vmguest.CPU: the pages this vCPU's PML log
// recorded since the last call (none to give without PML).
func (c *vmxFTCPU) HarvestOnCPU(into *ept.Bitmap) error {
	if c.pml == nil {
		return nil
	}
	if err := c.pml.drain(); err != nil {
		return err
	}
	into.Or(c.pml.acc)
	c.pml.acc.Reset()
	return nil
}

// FlushOnCPU implements vmguest.CPU: single-context INVEPT of the guest's
// EPTP on this CPU (SDM Vol. 3C 29.4.3.1), so a D bit cleared by the scan
// is set again by the next write.
func (c *vmxFTCPU) FlushOnCPU() error { return vmm.Invept{}.InvalidateSingleContext(c.eptp) }

// SetTSCOffset implements vmguest.CPU: VMCS TSC_OFFSET (SDM Vol. 3C
// 25.3 and 26.6.5).
func (c *vmxFTCPU) SetTSCOffset(off int64) error { return c.HW.VMCS.Write(vmm.TSCOffset, uint64(off)) }

// Close leaves VMX operation on the vCPU's CPU.
func (c *vmxFTCPU) Close() error {
	err := c.VMXCPU.Close()
	if derr := c.x.Disable(); err == nil {
		err = derr
	}
	return err
}
