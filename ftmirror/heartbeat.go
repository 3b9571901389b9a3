package ftmirror

import (
	"sync/atomic"
	"time"
)

// Heartbeat configures failure detection: every Interval each side sends a
// frame (a HEARTBEAT when it has nothing else to send); a side that hears
// nothing for Interval*Misses declares its peer lost.
type Heartbeat struct {
	Interval time.Duration
	Misses   int
}

// Deadline is the silence after which the peer is declared lost.
func (h Heartbeat) Deadline() time.Duration { return h.Interval * time.Duration(h.Misses) }

// Lease is how long after sending an epoch's END the primary may still
// release that epoch's output: a quarter of the deadline short of it, so
// that clock rate differences and scheduling delays cannot stretch a release
// past the moment the secondary may promote itself (doc.go, "Split brain").
func (h Heartbeat) Lease() time.Duration { return h.Deadline() - h.Deadline()/4 }

// liveness tracks when the peer was last heard from.
type liveness struct {
	clock Clock
	last  atomic.Int64 // UnixNano
}

func newLiveness(c Clock) *liveness {
	l := &liveness{clock: c}
	l.heard()
	return l
}

func (l *liveness) heard() { l.last.Store(l.clock.Now().UnixNano()) }

// silentFor is how long the peer has been silent.
func (l *liveness) silentFor() time.Duration {
	return time.Duration(l.clock.Now().UnixNano() - l.last.Load())
}

// lastHeard is the time the peer was last heard from.
func (l *liveness) lastHeard() time.Time { return time.Unix(0, l.last.Load()) }
