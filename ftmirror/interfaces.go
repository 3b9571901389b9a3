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

// DirtySource reports the pages written since the previous Harvest, into
// dst. The engine calls Harvest from its own goroutine, both with the guest
// paused (each checkpoint) and while it runs (the sync's rounds, forwarding,
// resync); the guarantee it relies on is: a guest write that a Harvest
// does not report is reported by a later one. An error means that cannot
// be promised for this harvest; the engine then ends the session (the
// secondary keeps its last committed epoch) rather than send a checkpoint
// that may miss a page.
//
// Who runs the harvest is the implementation's business, but it must make
// the clearing effective on every CPU that ran the guest before it returns.
// On the hardware that is the hard part: EPT D bits are cached in the TLB of
// each CPU that ran the guest, and INVEPT flushes only the CPU executing it,
// so clearing the bits from the engine's CPU and flushing there misses
// later writes through translations cached on a vCPU's CPU. A bare-metal
// source therefore either harvests on each vCPU's own CPU at a VM exit it
// requests (clear, INVEPT, resume), or clears the bits and has every CPU
// that ran the guest since the last harvest flush (single-context INVEPT)
// and acknowledge before Harvest returns; with PML, each vCPU drains its own
// log at an exit. A vCPU that does not answer in time is an error, not a
// silently short harvest. Simulator: an atomic bitmap (the writer stores
// the data, then sets the bit; Harvest swaps words to zero).
type DirtySource interface {
	Harvest(dst []uint32) ([]uint32, error)
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
