package ftmirror

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/wire"
)

func TestMirrorThenFailover(t *testing.T) {
	for _, fwd := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "forward"}[fwd], func(t *testing.T) {
			r := newRig(t, 256, func(c *Config) { c.Forward = fwd })
			pc, sc := net.Pipe()
			perr, serr := r.serve(pc, sc)
			r.waitEpoch(20)
			pc.Close() // the primary dies
			r.stopGuest()
			<-perr
			if err := <-serr; !errors.Is(err, ErrPeerLost) {
				t.Fatalf("secondary: %v", err)
			}
			// A closed link is a lost primary at once: no deadline to wait.
			if at, heard := r.s.PromoteAt(), r.s.LastHeard(); at.After(heard.Add(r.cfg.Heartbeat.Deadline() / 2)) {
				t.Fatalf("promotion %v after the primary was last heard; want at once on a closed link", at.Sub(heard))
			}
			tk := r.takeover()
			if tk.Epoch < 20 {
				t.Fatalf("took over at epoch %d", tk.Epoch)
			}
			if sum := r.p.Stats.Summary(); sum.Released == 0 || sum.Checkpoints < 20 {
				t.Fatalf("stats %+v", sum)
			}
		})
	}
}

// faultConn passes the primary's frames through, but applies fault to the
// second GROUP frame of the first epoch ≥ at that has two (so the first was
// already applied in place and must be rolled back). (Only epoch at itself
// was tried before: a guest starved during that epoch dirtied one group's
// worth of pages, and the test waited forever for the fault.)
type faultConn struct {
	net.Conn
	at     uint64
	fault  string
	mu     sync.Mutex
	seen   int    // GROUP frames seen of epoch
	epoch  uint64 // of the last GROUP frame
	prev   []byte
	held   []byte
	didIt  bool
	closed bool
}

func (c *faultConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held != nil { // reorder: send this one first, then the held one
		c.Conn.Write(b)
		c.Conn.Write(c.held)
		c.held = nil
		return len(b), nil
	}
	isTarget := false
	if !c.didIt && len(b) >= wire.HeaderSize && (wire.Type(b[3]) == wire.TGroup || wire.Type(b[3]) == wire.TGroupZ) && leU64(b[16:]) >= c.at {
		if e := leU64(b[16:]); e != c.epoch {
			c.epoch, c.seen = e, 0
		}
		c.seen++
		isTarget = c.seen == 2
	}
	if !isTarget {
		c.prev = append(c.prev[:0], b...)
		return c.Conn.Write(b)
	}
	c.didIt = true
	f := append([]byte(nil), b...)
	switch c.fault {
	case "corrupt":
		f[wire.HeaderSize+9] ^= 0x40
	case "forge":
		putU64(f[16:], leU64(f[16:])+1) // the next epoch's
	case "truncate":
		c.Conn.Write(f[:len(f)/2])
		c.Conn.Close()
		return len(b), nil
	case "replay":
		f = append([]byte(nil), c.prev...)
	case "drop":
		return len(b), nil
	case "reorder":
		c.held = f
		return len(b), nil
	}
	return c.Conn.Write(f)
}

func TestBadFramesApplyNothing(t *testing.T) {
	tests := []struct {
		fault string
		want  error
	}{
		{"corrupt", wire.ErrForged},
		{"forge", wire.ErrForged},
		{"truncate", ErrPeerLost}, // the primary's end closed mid-frame
		{"replay", wire.ErrReplay},
		{"drop", wire.ErrReplay},
		{"reorder", wire.ErrReplay},
	}
	for _, tc := range tests {
		t.Run(tc.fault, func(t *testing.T) {
			const at = 8
			r := newRig(t, 256, nil)
			pc, sc := net.Pipe()
			fc := &faultConn{Conn: pc, at: at, fault: tc.fault}
			perr, serr := r.serve(fc, sc)
			err := <-serr
			if !errors.Is(err, tc.want) {
				t.Fatalf("secondary ended with %v, want %v", err, tc.want)
			}
			pc.Close()
			<-perr
			r.stopGuest()
			fc.mu.Lock()
			hit := fc.epoch // the epoch whose second group was faulted
			fc.mu.Unlock()
			if c, ok := r.s.Committed(); c != hit-1 || !ok {
				t.Fatalf("committed %d (complete %v), want %d (the fault hit epoch %d)", c, ok, hit-1, hit)
			}
			r.takeover()
		})
	}
}

// partitionConn silently swallows everything once cut.
type partitionConn struct {
	net.Conn
	mu     sync.Mutex
	cut    bool
	closed chan struct{}
	once   sync.Once
}

func (c *partitionConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *partitionConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	cut := c.cut
	c.mu.Unlock()
	if cut {
		return len(b), nil
	}
	n, err := c.Conn.Write(b)
	if err != nil {
		c.mu.Lock()
		cut = c.cut
		c.mu.Unlock()
		if cut {
			// A write that was blocked in net.Pipe when the cut came
			// must not learn that the far end closed: nothing crosses
			// a partition.
			<-c.closed
			return 0, net.ErrClosed
		}
	}
	return n, err
}

func (c *partitionConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	cut := c.cut
	c.mu.Unlock()
	if cut {
		<-c.closed // nothing arrives any more
		return 0, net.ErrClosed
	}
	return n, err
}

func TestPartitionNeverTwoReleasingPrimaries(t *testing.T) {
	r := newRig(t, 256, nil)
	pc, sc := net.Pipe()
	pl := &partitionConn{Conn: pc, closed: make(chan struct{})}
	sl := &partitionConn{Conn: sc, closed: make(chan struct{})}
	perr, serr := r.serve(pl, sl)
	r.waitEpoch(15)
	cutAt := time.Now()
	for _, c := range []*partitionConn{pl, sl} {
		c.mu.Lock()
		c.cut = true
		c.mu.Unlock()
	}
	if err := <-serr; !errors.Is(err, ErrPeerLost) {
		t.Fatalf("secondary: %v", err)
	}
	// The old primary is alive, its guest still runs and emits output.
	promoteAt := r.s.PromoteAt()
	if want := r.s.LastHeard().Add(r.cfg.Heartbeat.Deadline()); !promoteAt.Equal(want) {
		t.Fatalf("a silent (not closed) link must wait out the deadline: promote at %v, want %v", promoteAt, want)
	}
	time.Sleep(time.Until(promoteAt))
	// (A write blocked in net.Pipe when the cut came may end the primary's
	// session with a closed-pipe error instead of its own deadline.)
	if err := <-perr; err == nil {
		t.Fatal("primary session survived the partition")
	}
	time.Sleep(50 * time.Millisecond) // the old primary keeps running meanwhile
	r.w.mu.Lock()
	for _, rel := range r.w.log {
		if !rel.at.Before(promoteAt) {
			t.Errorf("old primary released %d bytes at %v, after the secondary could promote (%v)", rel.n, rel.at.Sub(cutAt), promoteAt.Sub(cutAt))
		}
	}
	r.w.mu.Unlock()
	r.stopGuest()
	r.takeover()
	if ops := r.pg.Ops(); ops == 0 {
		t.Fatal("guest never ran")
	}
}

func TestResyncAcrossCheckpoints(t *testing.T) {
	r := newRig(t, 256, func(c *Config) { c.ResyncPagesPerEpoch = 24 })
	pc, sc := net.Pipe()
	perr, serr := r.serve(pc, sc)
	r.waitEpoch(6)
	sc.Close() // the secondary dies
	<-serr
	if err := <-perr; err == nil {
		t.Fatal("primary session survived a dead secondary")
	}
	r.w.mu.Lock()
	heldFrom := len(r.w.data)
	r.w.mu.Unlock()
	// A new secondary joins; memory moves 24 pages per checkpoint.
	r.s = NewSecondary(Config{PSK: testPSK, Epoch: r.cfg.Epoch, Heartbeat: r.cfg.Heartbeat}, blankLike(r))
	pc, sc = net.Pipe()
	perr, serr = r.serve(pc, sc)
	start := r.p.Epoch()
	sawIncomplete := false
	for {
		c, ok := r.s.Committed()
		if ok {
			break
		}
		if c > 0 {
			sawIncomplete = true
			r.w.mu.Lock()
			if len(r.w.data) != heldFrom {
				t.Fatalf("output released while the secondary was incomplete")
			}
			r.w.mu.Unlock()
		}
		time.Sleep(time.Millisecond)
	}
	c, _ := r.s.Committed()
	if !sawIncomplete || c-start < 256/24 {
		t.Fatalf("resync finished at epoch %d, started at %d; not spread over checkpoints", c, start)
	}
	r.waitEpoch(c + 5)
	pc.Close()
	r.stopGuest()
	<-perr
	<-serr
	r.takeover()
}

func TestTakeoverRefusedWhileIncomplete(t *testing.T) {
	pc, sc := net.Pipe()
	r := newRig(t, 256, func(c *Config) {
		c.Hook = func(p Point, e uint64) {
			if p == PointSyncRound && e == 2 {
				pc.Close() // the primary dies before the sync ends
			}
		}
	})
	perr, serr := r.serve(pc, sc)
	<-perr
	<-serr
	r.stopGuest()
	time.Sleep(time.Until(r.s.PromoteAt()))
	if _, err := r.s.Takeover(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("takeover of an unsynced secondary: %v", err)
	}
}

func TestUndoLog(t *testing.T) {
	r := newRig(t, 4, nil)
	r.stopGuest()
	mem := r.sg
	for i := 0; i < 4; i++ {
		copy(mem.Page(uint32(i)), bytes.Repeat([]byte{byte(i + 1)}, PageSize))
	}
	before := append([]byte(nil), mem.Memory()...)
	u := newUndoLog(func(n int) []byte { return make([]byte, n) })
	for _, pfn := range []uint32{2, 0, 2} {
		u.save(pfn, mem.Page(pfn))
		mem.Page(pfn)[17]++
	}
	if n := u.rollback(mem); n != 2 || !bytes.Equal(mem.Memory(), before) {
		t.Fatalf("rollback restored %d pages, memory equal: %v", n, bytes.Equal(mem.Memory(), before))
	}
	u.save(1, mem.Page(1))
	mem.Page(1)[0] = 99
	u.commit()
	if u.rollback(mem) != 0 || mem.Page(1)[0] != 99 {
		t.Fatal("rollback after commit undid committed data")
	}
}

func TestLiveness(t *testing.T) {
	c := newFakeClock()
	hb := Heartbeat{Interval: 10 * time.Millisecond, Misses: 4}
	l := newLiveness(c)
	l.reading(true)
	c.Advance(39 * time.Millisecond)
	if l.silentFor() > hb.Deadline() {
		t.Fatal("declared lost early")
	}
	c.Advance(2 * time.Millisecond)
	if l.silentFor() <= hb.Deadline() {
		t.Fatal("not declared lost after the deadline")
	}
	l.heard()
	if l.silentFor() != 0 {
		t.Fatal("heard did not reset")
	}
	// Not reading (this side's own apply is behind): not silence.
	l.reading(false)
	c.Advance(time.Second)
	if l.silentFor() != 0 {
		t.Fatal("counted silence while not reading")
	}
	l.reading(true)
	c.Advance(5 * time.Millisecond)
	if got := l.silentFor(); got != 5*time.Millisecond {
		t.Fatalf("silent for %v after 5 ms of reading", got)
	}
	if !l.lastHeard().Equal(c.Now().Add(-time.Second - 5*time.Millisecond)) {
		t.Fatal("lastHeard moved without bytes arriving")
	}
	if hb.Lease() >= hb.Deadline() {
		t.Fatal("release lease must end before the promotion deadline")
	}
}

func TestOutputLogTrim(t *testing.T) {
	l := outputLog{start: 10, data: []byte("abcdef")}
	l.trim(5)
	l.trim(12)
	if l.start != 12 || string(l.data) != "cdef" {
		t.Fatalf("%d %q", l.start, l.data)
	}
	l.trim(100)
	if l.start != 16 || len(l.data) != 0 {
		t.Fatalf("%d %q", l.start, l.data)
	}
}

// Output held from before the session is more than one END may carry: it
// follows over several epochs, the secondary acknowledges itself complete
// only once it holds all of it, and a takeover then loses nothing.
func TestHeldOutputFollowsOverEpochs(t *testing.T) {
	old := maxOutPerEnd
	// Small enough that the held output (about 7 KB) takes several ENDs,
	// large enough that a loaded machine's long epochs still catch up.
	maxOutPerEnd = 3000
	defer func() { maxOutPerEnd = old }()
	r := newRig(t, 256, nil)
	time.Sleep(300 * time.Millisecond) // no secondary yet: output is held
	pc, sc := net.Pipe()
	perr, serr := r.serve(pc, sc)
	r.waitEpoch(30)
	r.waitOutput()
	pc.Close()
	r.stopGuest()
	<-perr
	<-serr
	r.takeover()
}

// A primary that dies in the middle of writing a frame is a lost peer, not
// a protocol error: the secondary's error must say so to errors.Is (and
// still name the truncated frame underneath).
func TestPrimaryDiesMidFrame(t *testing.T) {
	r := newRig(t, 256, nil)
	pc, sc := net.Pipe()
	perr, serr := r.serve(&faultConn{Conn: pc, at: 6, fault: "truncate"}, sc)
	// The secondary sees the close either reading (a truncated frame) or
	// writing (a closed pipe): both are a lost peer, neither a protocol
	// error.
	err := <-serr
	if !errors.Is(err, ErrPeerLost) || errors.Is(err, ErrProtocol) {
		t.Fatalf("secondary ended with %v, want ErrPeerLost", err)
	}
	<-perr
	r.stopGuest()
	r.takeover()
}

// slowSink stalls every write while blocked (a full NIC queue).
type slowSink struct {
	OutputSink
	mu      sync.Mutex
	blocked chan struct{} // non-nil: writes wait until it is closed
}

func (s *slowSink) Release(off uint64, b []byte) error {
	s.mu.Lock()
	ch := s.blocked
	s.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return s.OutputSink.Release(off, b)
}

func (s *slowSink) block() {
	s.mu.Lock()
	s.blocked = make(chan struct{})
	s.mu.Unlock()
}

func (s *slowSink) unblock() {
	s.mu.Lock()
	close(s.blocked)
	s.blocked = nil
	s.mu.Unlock()
}

// A sink that stalls for twice the heartbeat deadline must not stop the
// primary from reading ACKs and heartbeats: the session survives, the
// secondary keeps committing, and the held output goes out afterwards.
func TestSlowSinkKeepsSession(t *testing.T) {
	var sink *slowSink
	r := newRigWith(t, 256, nil, func(o OutputSink) OutputSink { sink = &slowSink{OutputSink: o}; return sink }, nil)
	pc, sc := net.Pipe()
	perr, serr := r.serve(pc, sc)
	r.waitEpoch(5)
	sink.block()
	c0 := r.committed()
	time.Sleep(2 * r.cfg.Heartbeat.Deadline())
	select {
	case err := <-perr:
		t.Fatalf("primary dropped its secondary while the sink was slow: %v", err)
	default:
	}
	if c1 := r.committed(); c1 < c0+3 {
		t.Fatalf("secondary went from epoch %d to %d while the sink stalled", c0, c1)
	}
	sink.unblock()
	c1, _ := r.s.Committed()
	r.waitEpoch(c1 + 5)
	pc.Close()
	r.stopGuest()
	<-perr
	<-serr
	r.takeover()
}

// gateConn stalls writes while closed (a link that does not take data).
type gateConn struct {
	net.Conn
	mu   sync.Mutex
	gate chan struct{}
}

func (c *gateConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	g := c.gate
	c.mu.Unlock()
	if g != nil {
		<-g
	}
	return c.Conn.Write(b)
}

func (c *gateConn) set(closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if closed {
		c.gate = make(chan struct{})
	} else if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
}

// A secondary whose ACKs cannot leave (the link's send side is stalled)
// must not hold its lock meanwhile: Committed still answers.
func TestAckDoesNotHoldLock(t *testing.T) {
	r := newRig(t, 256, nil)
	pc, sc := net.Pipe()
	gc := &gateConn{Conn: sc}
	perr, serr := r.serve(pc, gc)
	r.waitEpoch(5)
	gc.set(true)
	time.Sleep(100 * time.Millisecond) // 20 epochs: more ACKs than the send queue holds
	r.committed()
	gc.set(false)
	c, _ := r.s.Committed()
	r.waitEpoch(c + 5)
	pc.Close()
	r.stopGuest()
	<-perr
	<-serr
	r.takeover()
}

// failingDirty fails every harvest from the nth on (a vCPU that did not
// answer the flush request).
type failingDirty struct {
	DirtySource
	mu   sync.Mutex
	n    int
	fail int
}

var errNoFlush = errors.New("vCPU 1 did not flush its EPT translations in time")

func (d *failingDirty) Harvest(dst []uint32) ([]uint32, error) {
	d.mu.Lock()
	d.n++
	fail := d.n >= d.fail
	d.mu.Unlock()
	if fail {
		return dst, errNoFlush
	}
	return d.DirtySource.Harvest(dst)
}

// A harvest that cannot promise every write ends the session instead of
// sending a checkpoint that may miss a page: the secondary keeps its last
// committed epoch, and a takeover from it is exact.
func TestHarvestErrorEndsSession(t *testing.T) {
	for _, fwd := range []bool{false, true} {
		t.Run(map[bool]string{false: "checkpoint", true: "forward"}[fwd], func(t *testing.T) {
			r := newRigWith(t, 256, func(c *Config) { c.Forward = fwd }, nil,
				func(d DirtySource) DirtySource { return &failingDirty{DirtySource: d, fail: 40} })
			pc, sc := net.Pipe()
			perr, serr := r.serve(pc, sc)
			if err := <-perr; !errors.Is(err, errNoFlush) {
				t.Fatalf("primary ended with %v, want the harvest error", err)
			}
			<-serr
			r.stopGuest()
			if c, ok := r.s.Committed(); !ok || c == 0 {
				t.Fatalf("secondary committed %d (complete %v)", c, ok)
			}
			r.takeover()
		})
	}
}

// TestPromotedResyncReleasesDirect: a promoted primary resyncing its first
// secondary releases the guest's output while that secondary holds no
// complete copy (it could not take over, and no other copy can), and from
// the first complete epoch on holds it for acknowledgements: a takeover
// after the resync replays only what the world may not have seen, and
// the world sees the stream once, in order (rig.takeover).
func TestPromotedResyncReleasesDirect(t *testing.T) {
	r := newRig(t, 256, func(c *Config) { c.ResyncPagesPerEpoch = 24 })
	r.p.Continue(3, 0, true) // promoted: the resync path, direct release
	pc, sc := net.Pipe()
	perr, serr := r.serve(pc, sc)
	released := func() int {
		r.w.mu.Lock()
		defer r.w.mu.Unlock()
		return len(r.w.data)
	}
	whileIncomplete := 0
	for deadline := time.Now().Add(20 * time.Second); ; {
		n := released() // before the check: released while still incomplete
		if _, ok := r.s.Committed(); ok {
			break
		}
		whileIncomplete = n
		if time.Now().After(deadline) {
			t.Fatal("resync never completed")
		}
		time.Sleep(time.Millisecond)
	}
	if whileIncomplete == 0 {
		t.Fatal("no output released during the resync of a promoted primary's first secondary")
	}
	c, _ := r.s.Committed()
	r.waitEpoch(c + 5)
	pc.Close()
	r.stopGuest()
	<-perr
	<-serr
	tk := r.takeover()
	if tk.Epoch < c {
		t.Fatalf("took over at epoch %d, before the first complete one %d", tk.Epoch, c)
	}
}
