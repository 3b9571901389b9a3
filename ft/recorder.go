package ft

import (
	"sync"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/net/mgmt"
)

// Checkpoint is one checkpoint as the management page plots it: when the
// guest was resumed, how long it was paused, and the bytes the FT link
// carried since the previous checkpoint (its pages, forwarded pages,
// state and output).
type Checkpoint = mgmt.Point

// Recorder keeps the last checkpoints in a ring.
type Recorder struct {
	mu    sync.Mutex
	ring  []Checkpoint
	next  int
	total uint64
}

// NewRecorder keeps up to n checkpoints.
func NewRecorder(n int) *Recorder { return &Recorder{ring: make([]Checkpoint, 0, n)} }

// Add records a checkpoint.
func (r *Recorder) Add(c Checkpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, c)
		return
	}
	r.ring[r.next] = c
	r.next = (r.next + 1) % len(r.ring)
}

// Total is the number of checkpoints ever recorded.
func (r *Recorder) Total() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// Since returns the checkpoints recorded at or after t, oldest first.
func (r *Recorder) Since(t time.Time) []Checkpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := t.UnixMilli()
	var out []Checkpoint
	for i := range r.ring {
		c := r.ring[(r.next+i)%len(r.ring)]
		if c.UnixMs >= ms {
			out = append(out, c)
		}
	}
	return out
}

// Rate is the number of checkpoints per second over the last window.
func (r *Recorder) Rate(window time.Duration) float64 {
	return float64(len(r.Since(time.Now().Add(-window)))) / window.Seconds()
}

// timedGuest measures each pause of the guest as the guest sees it (from
// Pause returning to Resume) and records it with the link bytes since the
// previous one. Pause and Resume are called by one engine goroutine at a
// time, so start needs no lock.
type timedGuest struct {
	ftmirror.Guest
	rec   *Recorder
	link  *Link
	start time.Time
	bytes uint64
}

func (g *timedGuest) Pause() {
	g.Guest.Pause()
	g.start = time.Now()
}

func (g *timedGuest) Resume() {
	now := time.Now()
	d := now.Sub(g.start)
	g.Guest.Resume()
	b := g.link.TxBytes()
	g.rec.Add(Checkpoint{UnixMs: now.UnixMilli(), PauseMs: float64(d) / 1e6, Bytes: b - g.bytes})
	g.bytes = b
}
