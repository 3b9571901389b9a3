package ft

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
)

// Protection is how well the protected guest is covered, as the console
// and /status show it.
type Protection string

const (
	// Unprotected: the guest runs with no secondary holding a complete
	// copy (none connected yet, or the session ended); its output is held.
	Unprotected Protection = "unprotected"
	// Syncing: a secondary is being brought up to date (brownout rounds,
	// then the blackout); the detail says how far.
	Syncing Protection = "syncing"
	// Protected: the secondary acknowledged a complete checkpoint.
	Protected Protection = "protected"
	// FailedOver: this node took over the guest from its lost primary.
	FailedOver Protection = "failed over"
	// Mirroring: a secondary holding (or receiving) the guest's copy.
	Mirroring Protection = "mirroring"
)

// ProtectionState follows the protection of the guest and prints each
// change to its writer (the console log's ft lines) as
//
//	protection: <state> (<detail>)
type ProtectionState struct {
	out io.Writer

	mu     sync.Mutex
	state  Protection
	detail string
	since  time.Time
}

// NewProtectionState starts in state s, printing changes to out.
func NewProtectionState(out io.Writer, s Protection, detail string) *ProtectionState {
	p := &ProtectionState{out: out}
	p.Set(s, detail)
	return p
}

// Set records and prints a change; setting the same state and detail
// again prints nothing.
func (p *ProtectionState) Set(s Protection, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s == p.state && detail == p.detail {
		return
	}
	p.state, p.detail, p.since = s, detail, time.Now()
	if detail != "" {
		fmt.Fprintf(p.out, "protection: %s (%s)\n", s, detail)
	} else {
		fmt.Fprintf(p.out, "protection: %s\n", s)
	}
}

// Get returns the state, its detail and since when it holds.
func (p *ProtectionState) Get() (Protection, string, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, p.detail, p.since
}

// Hook follows a primary's engine (ftmirror.Config.Hook): the sync's
// rounds and blackout are progress of Syncing, the first acknowledgement
// makes the guest Protected.
func (p *ProtectionState) Hook(pt ftmirror.Point, e uint64) {
	switch pt {
	case ftmirror.PointSyncRound:
		p.Set(Syncing, fmt.Sprintf("brownout round %d", e))
	case ftmirror.PointBlackout:
		p.Set(Syncing, fmt.Sprintf("blackout, epoch %d", e))
	case ftmirror.PointResync:
		p.Set(Syncing, "resync")
	case ftmirror.PointAcked:
		p.mu.Lock()
		done := p.state == Protected
		p.mu.Unlock()
		if !done {
			p.Set(Protected, fmt.Sprintf("secondary acknowledged epoch %d", e))
		}
	}
}

// Kill is a kill point of a primary, "point[:epoch]" as doppel.ft.sim.kill
// takes it: a point of the sync fires at its round or epoch, any other
// point at its first occurrence in an epoch ≥ the one given once an epoch
// has been acknowledged. It fires once.
type Kill struct {
	k         killPoint
	protected atomic.Bool
	fired     atomic.Bool
	held      atomic.Bool
}

// Hold keeps the kill point from firing until Arm: a test that must do
// something first (connect to the guest, read its output) arms it then.
func (k *Kill) Hold() { k.held.Store(true) }

// Arm lets a held kill point fire at its next occurrence.
func (k *Kill) Arm() { k.held.Store(false) }

// Point is the point the kill fires at.
func (k *Kill) Point() ftmirror.Point { return k.k.point }

// ParseKill parses a kill point; "" is no kill point (nil).
func ParseKill(s string) (*Kill, error) {
	k, err := parseKill(s)
	if err != nil || !k.set {
		return nil, err
	}
	return &Kill{k: k}, nil
}

// Split reports whether GROUP frames must be written in halves for the
// point (ftmirror.Config.SplitGroups).
func (k *Kill) Split() bool { return k != nil && k.k.point == ftmirror.PointMidGroup }

// Hit reports, once, whether the primary stops at point pt of epoch e.
func (k *Kill) Hit(pt ftmirror.Point, e uint64) bool {
	if k == nil {
		return false
	}
	if pt == ftmirror.PointAcked {
		k.protected.Store(true)
	}
	if k.held.Load() || pt != k.k.point || e < k.k.at || !(k.protected.Load() || k.k.inSync()) {
		return false
	}
	return k.fired.CompareAndSwap(false, true)
}
