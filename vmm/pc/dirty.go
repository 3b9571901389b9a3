package pc

import (
	"fmt"
	"sync"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
)

// Dirty-page tracking of a PC guest. Where the CPU has page-modification
// logging (SDM Vol. 3C 29.3.6) every vCPU logs the guest-physical
// addresses whose EPT dirty flag it sets into its own 4 KiB log, drained
// at each log-full exit and when the vCPU ends; elsewhere the EPT dirty
// flags (29.3.5) are scanned when the VM ends. Either way the VM's
// tables end with every dirty flag clear, so the memory space can carry
// the next VM of the restore test. The FT engine harvests the same two
// ways (ft/vmguest); here it counts the pages each VM wrote, which the
// restore test and the final report give.

// DirtyMode says how a guest's written pages are found.
type DirtyMode int

// Dirty-tracking modes.
const (
	DirtyNone DirtyMode = iota // nothing is tracked (no EPT A/D flags; the AMD-V path)
	DirtyPML                   // page-modification logging, per vCPU
	DirtyScan                  // scan of the EPT dirty flags
)

func (m DirtyMode) String() string {
	switch m {
	case DirtyPML:
		return "PML"
	case DirtyScan:
		return "scan of EPT dirty flags (no PML)"
	case DirtyNone:
		return "nothing (not tracked)"
	}
	return fmt.Sprintf("DirtyMode(%d)", int(m))
}

// dirtyModeOf picks the mode the CPU allows.
func dirtyModeOf(f vmm.Features) DirtyMode {
	switch {
	case f.PML:
		return DirtyPML
	case f.EPTAccessedDirty:
		return DirtyScan
	}
	return DirtyNone
}

// DirtyReport counts the pages the guest wrote.
type DirtyReport struct {
	Mode DirtyMode
	// Pages: 4 KiB pages written, summed over the VMs of the run (a page
	// written in two of them counts twice).
	Pages uint64
	// Logged: the pages PML reported; ScanOnly: those only the final scan
	// of a VM found (with PML: a page whose log entry a vCPU's cached
	// translation skipped). LogFull counts log-full exits.
	Logged, ScanOnly, LogFull uint64
}

func (r DirtyReport) String() string {
	if r.Mode == DirtyPML {
		return fmt.Sprintf("dirty tracking by %v: %d pages written (%d logged, %d log-full exits, %d more found by the final D-bit scan)",
			r.Mode, r.Pages, r.Logged, r.LogFull, r.ScanOnly)
	}
	return fmt.Sprintf("dirty tracking by %v: %d pages written", r.Mode, r.Pages)
}

func (r *DirtyReport) add(o DirtyReport) {
	r.Mode = o.Mode
	r.Pages += o.Pages
	r.Logged += o.Logged
	r.ScanOnly += o.ScanOnly
	r.LogFull += o.LogFull
}

// dirtyTracker collects one VM's written pages.
type dirtyTracker struct {
	mode   DirtyMode
	tables *ept.Tables
	mu     sync.Mutex // vCPUs drain their logs concurrently
	logged *ept.Bitmap
	full   uint64
}

func newDirtyTracker(mode DirtyMode, t *ept.Tables, memSize uint64) *dirtyTracker {
	return &dirtyTracker{mode: mode, tables: t, logged: ept.NewBitmap(memSize / ept.PageSize)}
}

// pmlLog is one vCPU's page-modification log.
type pmlLog struct {
	d    *dirtyTracker
	pa   uint64
	log  *[ept.PMLEntries]uint64
	vmcs vmm.HWVMCS
}

// newLog allocates a vCPU's log frame from the reserved region.
func (d *dirtyTracker) newLog(frames vmm.Frames) (*pmlLog, error) {
	pa, err := frames.AllocTable()
	if err != nil {
		return nil, fmt.Errorf("pc: PML log: %w", err)
	}
	return &pmlLog{d: d, pa: pa, log: frames.Table(pa)}, nil
}

// drain moves the log into the tracker and resets the index; on the
// vCPU's own thread, between two entries. The dirty flags of the logged
// pages are cleared (so their next write is logged again) and this CPU's
// cached translations of the guest dropped with INVEPT; the other vCPUs
// drop theirs at their own drains.
func (l *pmlLog) drain(full bool) error {
	err := l.vmcs.DrainPMLLog(l.d.tables.EPTP(), func(idx uint16) error {
		l.d.mu.Lock()
		defer l.d.mu.Unlock()
		_, err := l.d.tables.DrainPML(l.log, idx, l.d.logged)
		if full {
			l.d.full++
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("pc: %w", err)
	}
	return nil
}

// finish runs after every vCPU of the VM ended (and drained its log):
// the scan that finds, and clears, every dirty flag left. No vCPU is in
// VMX operation with these tables any more, so it issues no INVEPT (the
// space's invalidator is lazyInvept); the next VM in the space gets fresh
// VPIDs and flushes its EPTP before its first entry.
func (d *dirtyTracker) finish() (DirtyReport, error) {
	r := DirtyReport{Mode: d.mode}
	if d.mode == DirtyNone {
		return r, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	scan := ept.NewBitmap(d.logged.Frames())
	if err := d.tables.HarvestScan(scan); err != nil {
		return r, fmt.Errorf("pc: dirty scan: %w", err)
	}
	if d.mode == DirtyPML {
		r.Logged = uint64(d.logged.Count())
		r.ScanOnly = uint64(scan.AndNot(d.logged).Count())
		r.LogFull = d.full
		r.Pages = r.Logged + r.ScanOnly
	} else {
		r.Pages = uint64(scan.Count())
	}
	return r, nil
}
