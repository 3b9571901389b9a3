package main

import (
	"io"
	"sync"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/vmm/dirtytest"
	"github.com/doppel-ft/doppel/vmm/svm"
)

// registerSVMReport adds the AMD-V capability lines (revision, ASIDs, NPT,
// NRIP save, decode assists, clean bits, flush by ASID, AVIC, VM_CR's
// SVMDIS and LOCK explained, whether doppel can run guests here) to the
// CPU report. VM_CR is an MSR: read only on bare metal.
func registerSVMReport(bareMetal bool) {
	if bareMetal {
		svmReportOnce.Do(func() {
			board.RegisterCPUDetail("svm", func(f *board.Features) ([]string, error) {
				if !f.SVM {
					return nil, nil // the CPUID line already says SVM: no
				}
				return svm.ProbeCaps().Report(), nil
			})
		})
	}
}

var svmReportOnce sync.Once

// runTestGuest runs the dirty-page test guest under the vendor the CPU
// offers, chosen from CPUID at boot: VT-x, else AMD-V (dirtytest.RunAny).
func runTestGuest(out io.Writer, flags *board.Values) error {
	return dirtytest.RunAnyFromFlags(out, flags)
}
