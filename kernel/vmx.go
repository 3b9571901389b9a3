package main

import (
	"sync"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/vmm"
)

// registerVMXReport adds the vmm's VMX capability lines (VMCS revision, EPT,
// A/D bits, PML, VPID, whether doppel can run guests here) to the CPU
// report. The capability MSRs are read only on bare metal, where RDMSR
// works; they are the same on every CPU of a machine, so the thread need not
// be pinned.
func registerVMXReport(bareMetal bool) {
	if bareMetal {
		vmxReportOnce.Do(registerVMXDetail)
	}
}

var vmxReportOnce sync.Once

func registerVMXDetail() {
	board.RegisterCPUDetail("vmx", func(f *board.Features) ([]string, error) {
		if !f.VMX {
			return nil, nil // the CPUID line already says VMX: no
		}
		return vmm.ReadCaps(true, cpu.RDMSR).Report(), nil
	})
}
