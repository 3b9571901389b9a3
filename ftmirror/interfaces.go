package ftmirror

import (
	"time"

	"github.com/doppel-ft/doppel/ftmirror/pagediff"
	"github.com/doppel-ft/doppel/ftmirror/wire"
)

// PageSize is the guest page size the engine works in.
const PageSize = pagediff.PageSize

// Memory is guest-physical memory in 4 KiB pages. Page returns a slice that
// aliases the guest's memory; the engine writes it only on the secondary.
// Bare metal: the EPT-mapped guest RAM; simulator: a byte slice.
type Memory interface {
	NumPages() int
	Page(pfn uint32) []byte
}

// DirtySource reports pages written since the previous Harvest. It must be
// safe to call while the guest runs, with this guarantee: a guest write that
// the harvest does not report lands in the page before Harvest returns... or
// is reported by a later Harvest. In practice: the writer stores the data and
// then sets the dirty bit; Harvest clears bits (atomically) before the engine
// reads the pages. Bare metal: EPT D bits or PML; simulator: a bitmap.
type DirtySource interface {
	Harvest(dst []uint32) []uint32
}

// Blob is an opaque, versioned piece of guest state (vCPU registers, a
// device model) carried in a checkpoint.
type Blob = wire.Blob

// Guest is the control surface of the protected VM.
type Guest interface {
	// Pause returns once no vCPU executes guest code and devices are
	// quiesced (F3, F5); Resume undoes it.
	Pause()
	Resume()
	// SaveState appends the vCPU and device state. Called only while paused.
	SaveState(dst []Blob) []Blob
}

// OutputSink is where guest output goes once it is safe: the outside world.
// offset is the position of b[0] in the guest's output stream.
type OutputSink interface {
	Release(offset uint64, b []byte) error
}

// Clock is the engine's only time source: every wait, tick and timestamp
// of the engine goes through it, so tests drive timing with a fake clock.
// Bare metal: the TSC and the local APIC timer; simulator: the host clock.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed
	// on this clock (d ≤ 0: at once).
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the host clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
