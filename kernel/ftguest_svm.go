package main

import (
	"fmt"
	"sync"

	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/svm"
)

// svmVendor builds nested page tables and svm.PCCPU vCPUs.
type svmVendor struct {
	caps   svm.Caps
	tbl    *ept.Tables
	inv    nptFlush
	region *ept.Region
}

func (v *svmVendor) name() string { return "AMD-V" }

// threadFree implements ftVendor: VMRUN saves the host's state in the
// CPU's save area at each entry, so a vCPU runs on any thread of the CPU
// whose SVM it enabled, once that thread adopts it (PCCPU.AdoptThread:
// kicks and time-slice signals go to the thread recorded).
func (v *svmVendor) threadFree() bool { return true }

// scan implements ftVendor: NPT has no PML, so every paused harvest
// scans the nested tables' dirty flags.
func (v *svmVendor) scan(t *ept.Tables) ept.DirtySource { return ept.ScanSource{T: t} }

func (v *svmVendor) tables(r *ept.Region, _ bool) (*ept.Tables, error) {
	t, err := ept.New(r, &v.inv, ept.Options{Nested: true})
	if err != nil {
		return nil, fmt.Errorf("ft guest: nested tables: %w", err)
	}
	v.tbl = t
	return t, nil
}

func (v *svmVendor) newCPU(i int, vc vcpuConfig) (vmguest.CPU, error) {
	s, err := svm.Enable(v.caps, vc.region)
	if err != nil {
		return nil, fmt.Errorf("ft guest: enable SVM: %w", err)
	}
	view := vmm.NewCPUIDView(vmm.CPUIDConfig{Host: cpu.CPUID, CPUs: ftGuestCPUs, TSCHz: vc.tscHz, CrystalHz: vc.crystal, TSCDeadline: true})
	b := vc.board
	c, err := svm.NewPCCPU(svm.PCConfig{
		SVM: s, Index: i, NCR3: v.tbl.NCR3(), Start: vc.state, Mem: vc.mem,
		Ports: b.Ports, MMIO: b.MMIO[i], Devices: &b.Devices,
		Source: b.Source(i), APIC: b.LAPICs[i], SIPI: b.LAPICs[i], TPR: b.LAPICs[i],
		Timers: b.Timers(i), Clock: vc.clock, View: view, Wake: b.Wake[i],
	})
	if err != nil {
		s.Disable()
		return nil, fmt.Errorf("ft guest: vcpu %d: %w", i, err)
	}
	v.inv.mu.Lock()
	v.inv.hws = append(v.inv.hws, c.HW)
	v.inv.mu.Unlock()
	return &svmFTCPU{c, s}, nil
}

// svmFTCPU is a PCCPU with the per-vCPU hooks vmguest needs. SVM has no
// per-CPU dirty log: the NPT D bits are scanned (vmguest.Config.Tables).
type svmFTCPU struct {
	*svm.PCCPU
	s *svm.SVM
}

// HarvestOnCPU implements vmguest.CPU: nothing to drain under SVM.
func (c *svmFTCPU) HarvestOnCPU(*ept.Bitmap) error { return nil }

// FlushOnCPU implements vmguest.CPU: the next VMRUN on this CPU flushes
// the guest's nested translations (VMCB TLB_CONTROL, APM Vol. 2 15.16.1),
// so a D bit cleared by the scan is set again by the next write.
func (c *svmFTCPU) FlushOnCPU() error { return c.HW.InvalidateSingleContext(0) }

// SetTSCOffset implements vmguest.CPU: VMCB TSC_OFFSET (APM Vol. 2
// 15.30.5), guest TSC = host TSC + offset.
func (c *svmFTCPU) SetTSCOffset(off int64) error {
	c.HW.VMCB.Set64(svm.TSCOffset, uint64(off))
	return nil
}

// Close leaves SVM operation on the vCPU's CPU.
func (c *svmFTCPU) Close() error { c.s.Disable(); return nil }

// nptFlush fans a table change out to every vCPU's ASID flush.
type nptFlush struct {
	mu  sync.Mutex
	hws []*svm.HWVCPU
}

func (n *nptFlush) InvalidateSingleContext(root uint64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.hws {
		if err := h.InvalidateSingleContext(root); err != nil {
			return err
		}
	}
	return nil
}
