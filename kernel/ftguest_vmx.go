package main

import (
	"fmt"

	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/vmm"
)

// vmxVendor builds EPT tables and vmm.VMXCPU vCPUs. The dirty log is the
// EPT D bits (A/D enabled, SDM Vol. 3C 29.3.5) scanned by vmguest with
// every vCPU held at an exit; PML is left off, so HarvestOnCPU has
// nothing to drain.
type vmxVendor struct {
	caps vmm.Caps
	tbl  *ept.Tables
	vpid uint16
}

func (v *vmxVendor) name() string { return "VT-x" }

// noInvept is the tables' invalidator: INVEPT flushes only the CPU that
// runs it, and the scan runs on the engine's CPU, which need not be in
// VMX operation at all (INVEPT would fault there). vmguest has every
// vCPU flush its own CPU (FlushOnCPU) before it enters the guest again
// after a scan, which is the flush that matters; the tables change in no
// other way after the guest is built.
type noInvept struct{}

func (noInvept) InvalidateSingleContext(uint64) error { return nil }

func (v *vmxVendor) tables(r *ept.Region) (*ept.Tables, error) {
	if !v.caps.Features().EPTAccessedDirty {
		return nil, fmt.Errorf("ft guest: the CPU's EPT has no accessed/dirty flags: no dirty log")
	}
	t, err := ept.New(r, noInvept{}, ept.Options{AccessedDirty: true})
	if err != nil {
		return nil, fmt.Errorf("ft guest: EPT: %w", err)
	}
	v.tbl = t
	return t, nil
}

func (v *vmxVendor) newCPU(i int, vc vcpuConfig) (vmguest.CPU, error) {
	x, err := vmm.Enable(v.caps, vc.region)
	if err != nil {
		return nil, fmt.Errorf("ft guest: enable VMX: %w", err)
	}
	proc2 := uint32(v.caps.Proc2 >> 32) // allowed-1 settings (SDM App. A.3.3)
	view := vmm.NewCPUIDView(vmm.CPUIDConfig{Host: cpu.CPUID, CPUs: 1, TSCHz: vc.tscHz, CrystalHz: vc.crystal,
		RDTSCP: proc2&vmm.Proc2EnableRDTSCP != 0, INVPCID: proc2&vmm.Proc2EnableINVPCID != 0, TSCDeadline: true})
	v.vpid++
	b := vc.board
	c, err := vmm.NewVMXCPU(vmm.VMXCPUConfig{
		VMX: x, Frames: vc.region, Index: i, EPTP: v.tbl.EPTP(), VPID: v.vpid,
		Start: vc.state, Mem: vc.mem, Ports: b.Ports, MMIO: b.MMIO[i],
		Devices: &b.Devices, Source: b.Source(i), APIC: b.LAPICs[i],
		SIPI: b.LAPICs[i], TPR: b.LAPICs[i], Timers: b.Timers(i),
		Clock: vc.clock, View: view, Wake: b.Wake[i],
	})
	if err != nil {
		x.Disable()
		return nil, fmt.Errorf("ft guest: vcpu %d: %w", i, err)
	}
	return &vmxFTCPU{VMXCPU: c, x: x, eptp: v.tbl.EPTP()}, nil
}

// vmxFTCPU is a VMXCPU with the per-vCPU hooks vmguest needs; each runs
// on the vCPU's own CPU, where its VMCS is current.
type vmxFTCPU struct {
	*vmm.VMXCPU
	x    *vmm.VMX
	eptp uint64
}

// HarvestOnCPU implements vmguest.CPU: no PML log to drain.
func (c *vmxFTCPU) HarvestOnCPU(*ept.Bitmap) error { return nil }

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
