package ftmirror

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/simguest"
	"github.com/doppel-ft/doppel/ftmirror/wire"
)

var testPSK = bytes.Repeat([]byte{0x5a}, wire.KeySize)

// world is the outside world: it accepts output only at the next stream
// offset, so a duplicate or a gap is an error, and it remembers who
// released what and when.
type world struct {
	mu   sync.Mutex
	data []byte
	errs []error
	log  []release
}

type release struct {
	who string
	off uint64
	n   int
	at  time.Time
}

type worldSink struct {
	w   *world
	who string
}

func (s worldSink) Release(off uint64, b []byte) error {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if off != uint64(len(w.data)) {
		err := fmt.Errorf("%s released offset %d, world is at %d", s.who, off, len(w.data))
		w.errs = append(w.errs, err)
		return err
	}
	w.data = append(w.data, b...)
	w.log = append(w.log, release{s.who, off, len(b), time.Now()})
	return nil
}

// rig is a primary and a secondary over an in-memory link.
type rig struct {
	t       *testing.T
	cfg     Config
	params  simguest.Params
	pg, sg  *simguest.Guest
	p       *Primary
	s       *Secondary
	w       *world
	stop    chan struct{}
	guestWG sync.WaitGroup
	stopped sync.Once

	mu       sync.Mutex
	snaps    map[uint64][]byte // primary memory at each capture
	snapOps  map[uint64]uint64
	released uint64 // highest epoch whose output was released
	ended    []string
}

// snapWindow is how many epochs of memory snapshots a rig keeps, and
// snapAhead how far past the secondary's committed epoch it still takes
// them (a connected secondary is never that far behind).
const (
	snapWindow = 1000
	snapAhead  = 200
)

func newRig(t *testing.T, pages int, tweak func(*Config)) *rig {
	return newRigWith(t, pages, tweak, nil, nil)
}

// newRigWith is newRig with the primary's sink and dirty source wrapped,
// where the wrappers are set.
func newRigWith(t *testing.T, pages int, tweak func(*Config), wrap func(OutputSink) OutputSink, wrapDirty func(DirtySource) DirtySource) *rig {
	return newRigGuest(t, pages, nil, tweak, wrap, wrapDirty)
}

// newRigGuest is newRigWith with the guest's parameters tweaked too.
func newRigGuest(t *testing.T, pages int, guest func(*simguest.Params), tweak func(*Config), wrap func(OutputSink) OutputSink, wrapDirty func(DirtySource) DirtySource) *rig {
	r := &rig{t: t, w: &world{}, stop: make(chan struct{}), snaps: map[uint64][]byte{}, snapOps: map[uint64]uint64{}}
	r.params = simguest.Params{Pages: pages, Seed: 7, Pattern: simguest.Uniform, Rate: 4000, ZeroEvery: 5}
	if guest != nil {
		guest(&r.params)
	}
	r.cfg = Config{PSK: testPSK, Generation: 1, Epoch: 5 * time.Millisecond, GroupBytes: 1024,
		// A 3 s deadline: a loaded 2-core machine under -race stalls
		// processes for more than a second, and a test must not take
		// that for a dead peer. (A closed link is detected at once.)
		Heartbeat: Heartbeat{Interval: 10 * time.Millisecond, Misses: 300}}
	r.cfg.Hook = func(pt Point, e uint64) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch pt {
		case PointPaused:
			if c, _ := r.s.Committed(); e > c+snapAhead {
				// Not committed by the time the primary is this far ahead:
				// the link is cut, and a partitioned primary runs on
				// for its patience (two deadlines) with nobody reading.
				return
			}
			r.snaps[e] = append([]byte(nil), r.pg.Memory()...)
			r.snapOps[e] = r.pg.Ops()
			// Keep a window, not every epoch: at 5 ms epochs a long
			// (loaded, -race) run otherwise grows by 200 snapshots a
			// second. A takeover epoch is far younger than the window.
			delete(r.snaps, e-snapWindow)
			delete(r.snapOps, e-snapWindow)
		case PointReleased:
			r.released = max(r.released, e)
		}
	}
	if tweak != nil {
		tweak(&r.cfg)
	}
	r.pg = simguest.New(r.params)
	r.sg = simguest.NewBlank(r.params)
	var sink OutputSink = worldSink{r.w, "primary"}
	if wrap != nil {
		sink = wrap(sink)
	}
	var dirty DirtySource = r.pg
	if wrapDirty != nil {
		dirty = wrapDirty(dirty)
	}
	r.p = NewPrimary(r.cfg, r.pg, dirty, r.pg, sink)
	r.pg.Emit = r.p.Output
	scfg := r.cfg
	scfg.Hook = nil
	r.s = NewSecondary(scfg, r.sg)
	r.guestWG.Add(1)
	go func() { defer r.guestWG.Done(); r.pg.Run(r.stop) }()
	// A test that fails before it stops the guest must not leave it
	// running: under -race on a loaded machine a few such guests starved
	// every later test of the package.
	t.Cleanup(r.stopGuest)
	return r
}

// serve runs both ends over the given link ends; it returns channels with
// each side's Serve result.
func (r *rig) serve(pc, sc net.Conn) (perr, serr chan error) {
	perr, serr = make(chan error, 1), make(chan error, 1)
	go func() { err := r.p.Serve(pc); r.note("primary", err); perr <- err }()
	go func() { err := r.s.Serve(sc); r.note("secondary", err); serr <- err }()
	return perr, serr
}

func (r *rig) note(who string, err error) {
	r.mu.Lock()
	r.ended = append(r.ended, fmt.Sprintf("%s: %v", who, err))
	r.mu.Unlock()
}

// waitEpoch waits until the secondary has committed a complete epoch ≥ e.
func (r *rig) waitEpoch(e uint64) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, ok := r.s.Committed(); ok && c >= e {
			return
		}
		time.Sleep(time.Millisecond)
	}
	c, ok := r.s.Committed()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Fatalf("secondary stuck at epoch %d (complete %v), want %d; sessions ended: %q", c, ok, e, r.ended)
}

func (r *rig) stopGuest() {
	r.stopped.Do(func() { close(r.stop) })
	r.guestWG.Wait()
}

// takeoverAfterEpochs runs r's pair over a pipe for n epochs, cuts the
// link, stops the guest, and takes over on the secondary.
func takeoverAfterEpochs(r *rig, n uint64) Takeover {
	pc, sc := net.Pipe()
	perr, serr := r.serve(pc, sc)
	r.waitEpoch(n)
	pc.Close()
	r.stopGuest()
	<-perr
	<-serr
	return r.takeover()
}

// takeover promotes the secondary and checks it against the primary's
// capture of the committed epoch, then releases its output into the world
// and checks the world saw the exact output stream once.
func (r *rig) takeover() Takeover {
	t := r.t
	time.Sleep(time.Until(r.s.PromoteAt()))
	tk, err := r.s.Takeover()
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	r.mu.Lock()
	snap, ok := r.snaps[tk.Epoch]
	ops := r.snapOps[tk.Epoch]
	rel := r.released
	r.mu.Unlock()
	if !ok {
		t.Fatalf("no primary capture of epoch %d", tk.Epoch)
	}
	if tk.Epoch < rel {
		t.Fatalf("secondary at epoch %d, but the primary released output of epoch %d", tk.Epoch, rel)
	}
	if !bytes.Equal(r.sg.Memory(), snap) {
		t.Fatalf("secondary memory differs from the primary's at epoch %d", tk.Epoch)
	}
	if got, _ := simguest.OpsIn(tk.Blobs); got != ops {
		t.Fatalf("state says %d ops, primary had %d at epoch %d", got, ops, tk.Epoch)
	}
	r.w.mu.Lock()
	at := uint64(len(r.w.data))
	r.w.mu.Unlock()
	if at < tk.OutOffset || at > tk.OutEnd {
		t.Fatalf("world at %d outside the secondary's output [%d,%d): gap", at, tk.OutOffset, tk.OutEnd)
	}
	worldSink{r.w, "promoted"}.Release(at, tk.Out[at-tk.OutOffset:])
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	if len(r.w.errs) > 0 {
		t.Fatalf("world: %v", r.w.errs)
	}
	if want := simguest.ExpectedOutput(r.params, ops); !bytes.Equal(r.w.data, want) {
		t.Fatalf("world saw %d bytes, want exactly %d (the output of %d ops)", len(r.w.data), len(want), ops)
	}
	return tk
}

// committed returns the secondary's committed epoch, failing the test if
// Committed blocks (the secondary must never hold its lock on the link).
func (r *rig) committed() uint64 {
	got := make(chan uint64, 1)
	go func() { c, _ := r.s.Committed(); got <- c }()
	select {
	case c := <-got:
		return c
	case <-time.After(2 * time.Second):
		r.t.Fatal("Secondary.Committed blocked for 2 s")
		return 0
	}
}

// waitOutput waits until the secondary holds every output byte of its
// committed epoch (a takeover then loses nothing).
func (r *rig) waitOutput() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.s.mu.Lock()
		ok := r.s.complete && r.s.outLog.end() == r.s.outEnd
		r.s.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	r.t.Fatal("secondary never held all committed output")
}
