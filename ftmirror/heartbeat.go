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

// minHandshake is the least time a handshake is given: a HELLO and its
// answer are one round trip on a link that is otherwise idle, but a slow
// emulated link or a loaded host can take a good part of a second.
const minHandshake = time.Second

// Handshake bounds the HELLO exchange that opens a session: twice the
// deadline, at least minHandshake. A peer that connected and then said
// nothing (it died, or gave up on the connection before its answer
// arrived) is dropped then, so that the primary accepts the next
// connection instead of waiting on a dead one for as long as the
// transport would (forever on a TCP connection without keepalives).
func (h Heartbeat) Handshake() time.Duration { return max(2*h.Deadline(), minHandshake) }

// Lease is how long after sending an epoch's END the primary may still
// release that epoch's output: a quarter of the deadline short of it, so
// that clock rate differences and scheduling delays cannot stretch a release
// past the moment the secondary may promote itself (doc.go, "Split brain").
func (h Heartbeat) Lease() time.Duration { return h.Deadline() - h.Deadline()/4 }

// liveness tracks when the peer was last heard from. Silence counts only
// while this side is waiting for the peer's bytes (a read is under way):
// a side that stops reading because its own apply is behind has not
// stopped hearing its peer, whose data is queued for it, and must not
// declare it lost for that (a false failover).
type liveness struct {
	clock     Clock
	last      atomic.Int64 // UnixNano: bytes last arrived
	readSince atomic.Int64 // UnixNano: start of the read under way, 0 if none
}

func newLiveness(c Clock) *liveness {
	l := &liveness{clock: c}
	l.heard()
	return l
}

func (l *liveness) heard() { l.last.Store(l.clock.Now().UnixNano()) }

// reading marks the start (on) or the end (off) of a read of the link.
func (l *liveness) reading(on bool) {
	if on {
		l.readSince.Store(l.clock.Now().UnixNano())
	} else {
		l.readSince.Store(0)
	}
}

// silentFor is how long this side has been waiting for the peer without
// hearing from it: zero while no read is under way.
func (l *liveness) silentFor() time.Duration {
	rs := l.readSince.Load()
	if rs == 0 {
		return 0
	}
	return time.Duration(l.clock.Now().UnixNano() - max(l.last.Load(), rs))
}

// lastHeard is the time the peer's bytes last arrived. The promotion rule
// counts from it (doc.go, "Split brain"), never from readSince.
func (l *liveness) lastHeard() time.Time { return time.Unix(0, l.last.Load()) }
