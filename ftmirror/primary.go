package ftmirror

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/pagediff"
	"github.com/doppel-ft/doppel/ftmirror/wire"
)

// Config tunes a Primary or Secondary.
type Config struct {
	PSK        []byte // wire.KeySize bytes, shared by both ends
	Generation uint64 // bumped by each promotion; fences older primaries
	Epoch      time.Duration
	GroupBytes int // target GROUP payload size
	Heartbeat  Heartbeat
	// Forward sends the pages dirtied so far half way and five sixths of the
	// way through each epoch
	// while the guest runs (F6), so the checkpoint has fewer to capture.
	Forward bool
	// Brownout ends the initial sync when a round has at most TargetPages
	// dirty pages, shrinks by less than 10%, or after MaxRounds rounds.
	BrownoutTargetPages int
	BrownoutMaxRounds   int
	// ResyncPagesPerEpoch is how much of memory each checkpoint carries when
	// a secondary joins a primary that is already running (F7).
	ResyncPagesPerEpoch int
	// Hook, if set, is called at each Point (fault injection).
	Hook func(p Point, epoch uint64)
	// ShadowBytes bounds the primary's shadow of what the secondary holds
	// (the base for deltas): 0 shadows all of memory, touched as pages are
	// first resent; a smaller size is a direct-mapped cache allocated with
	// Alloc up front, and pages that miss it are sent in full.
	ShadowBytes int
	// Alloc, if set, allocates buffers the pause must not wait on (the
	// simulator pre-faults them; bare metal takes them from reserved memory).
	Alloc func(n int) []byte
	// SplitGroups writes each GROUP frame in two halves with the hook
	// called at PointMidGroup in between (to kill a primary mid-frame).
	SplitGroups bool
	// ExactHooks drains the link before the hooks that describe what is on
	// the wire (begin, between-groups, before-end, after-end), so a kill
	// there leaves exactly that on the wire. It serialises the pipeline:
	// for fault injection only.
	ExactHooks bool
	// WholeReleases hands each epoch's sealed output to the sink in one
	// Release, so released offsets (and the offset a promoted secondary
	// resumes from) fall only between two Output calls. A sink that parses
	// records out of the stream (ft/vmguest's Splitter) needs that. Without
	// it the first output of a release is split in two, with the hook
	// called at PointMidRelease in between.
	WholeReleases bool
	// Compression is how GROUP frames are compressed (doc.go, "Bytes on
	// the wire"); the zero value is zstd.
	Compression Compression
	// Input, if set, is called on a secondary with each INPUT record its
	// primary forwarded (Primary.Input), in the order they were given,
	// under the secondary's lock: it must not block, and must copy b to
	// keep it.
	Input func(b []byte)
	Clock Clock
}

// Compression chooses the codec a primary tries on each GROUP frame. A
// secondary decodes every codec whatever it is set to.
type Compression uint8

const (
	CompressZstd Compression = iota // zstd, fastest level: the best ratio at link speeds of MB/s
	CompressS2                      // s2: several times faster, a lower ratio (for fast links)
	CompressOff                     // send every group as it is
)

// codec is the wire codec of c (0: none).
func (c Compression) codec() uint8 {
	switch c {
	case CompressZstd:
		return wire.CodecZstd
	case CompressS2:
		return wire.CodecS2
	}
	return 0
}

// ParseCompression parses "zstd", "s2" or "off".
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "zstd", "":
		return CompressZstd, nil
	case "s2":
		return CompressS2, nil
	case "off", "none":
		return CompressOff, nil
	}
	return 0, fmt.Errorf("ftmirror: unknown compression %q (want zstd, s2 or off)", s)
}

func (c Compression) String() string {
	switch c {
	case CompressZstd:
		return "zstd"
	case CompressS2:
		return "s2"
	case CompressOff:
		return "off"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

func (c *Config) defaults() {
	if c.Epoch == 0 {
		c.Epoch = 25 * time.Millisecond
	}
	if c.GroupBytes == 0 {
		c.GroupBytes = 512 << 10
	}
	if c.Heartbeat.Interval == 0 {
		c.Heartbeat = Heartbeat{Interval: 10 * time.Millisecond, Misses: 10}
	}
	if c.BrownoutTargetPages == 0 {
		c.BrownoutTargetPages = 1024
	}
	if c.BrownoutMaxRounds == 0 {
		c.BrownoutMaxRounds = 8
	}
	if c.ResyncPagesPerEpoch == 0 {
		c.ResyncPagesPerEpoch = 2048
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
}

func (c *Config) hook(p Point, e uint64) {
	if c.Hook != nil {
		c.Hook(p, e)
	}
}

// snapPages is the initial size of the checkpoint snapshot, in pages; it is
// allocated (and, in the simulator, touched) up front so that the pause
// never waits for fresh memory.
const snapPages = 4096

// Primary runs the protected guest and mirrors it to one secondary at a time.
type Primary struct {
	cfg   Config
	mem   Memory
	dirty DirtySource
	guest Guest
	sink  OutputSink
	out   outputBuffer
	Stats Stats

	// Shadow: what the secondary holds (committed plus staged) for the
	// pages it caches (see shadowed); the base for compact deltas.
	shadow []byte
	tags   []uint32         // per slot: pfn+1 of the page held, 0 for none
	state  []uint8          // per page: pageZero or pageSent
	snap   snapshot         // pages copied in the pause, reused across sessions
	zc     *wire.Compressor // nil: groups go uncompressed

	// relMu serialises releases to the sink (the releaser of each session
	// and RunAlone), so the stream goes out in order.
	relMu sync.Mutex

	mu     sync.Mutex
	epoch  uint64 // last epoch captured
	direct bool   // promoted: may release without acks (see directLocked)
	served bool   // a session has started since creation
	// protected: a secondary of this primary acknowledged a complete copy
	// (it may have promoted itself since, so direct release ends).
	protected bool

	// outKick (1-buffered) tells RunAlone that output was emitted: a
	// direct primary releases it at once.
	outKick chan struct{}

	// input is the session guest input is forwarded on (nil: none);
	// inputsSent and inputsDropped count the records (input.go).
	input                     atomic.Pointer[pSession]
	inputsSent, inputsDropped atomic.Uint64
}

// NewPrimary returns a primary over the given guest.
func NewPrimary(cfg Config, mem Memory, dirty DirtySource, guest Guest, sink OutputSink) *Primary {
	cfg.defaults()
	n := mem.NumPages()
	alloc := cfg.Alloc
	if alloc == nil {
		alloc = func(n int) []byte { return make([]byte, n) }
	}
	slots, shadowAlloc := n, func(n int) []byte { return make([]byte, n) } // touched lazily
	if cfg.ShadowBytes > 0 && cfg.ShadowBytes/PageSize < n {
		slots, shadowAlloc = max(cfg.ShadowBytes/PageSize, 1), alloc
	}
	p := &Primary{cfg: cfg, mem: mem, dirty: dirty, guest: guest, sink: sink,
		shadow: shadowAlloc(slots * PageSize), tags: make([]uint32, slots), state: make([]uint8, n),
		snap: snapshot{alloc: alloc}, outKick: make(chan struct{}, 1)}
	p.snap.grow(snapPages)
	if codec := cfg.Compression.codec(); codec != 0 {
		// Only an unknown codec fails, and codec() knows none: without a
		// compressor the primary sends groups as they are.
		p.zc, _ = wire.NewCompressor(codec)
	}
	p.Stats.setCompression(p.zc)
	return p
}

// Continue sets the epoch and output stream position of a primary made
// from a secondary by takeover. With direct set it releases output without
// acknowledgement until a secondary of its holds a complete copy: the old
// primary can no longer release, since it needs our acks, and a secondary
// without a complete copy cannot take over (doc.go, "Split brain").
func (p *Primary) Continue(epoch, outOffset uint64, direct bool) {
	p.mu.Lock()
	p.epoch, p.direct = epoch, direct
	p.mu.Unlock()
	p.out.start(outOffset)
}

// SetGeneration sets the generation this primary presents (Config.Generation)
// when it was built before it knew it: a secondary builds the primary it
// would become ahead of its takeover, since NewPrimary for a large guest
// takes long (the shadow of guest memory). Call it before the first Serve.
func (p *Primary) SetGeneration(g uint64) {
	p.mu.Lock()
	p.cfg.Generation = g
	p.mu.Unlock()
}

// Output records guest output; it is released once safe.
func (p *Primary) Output(b []byte) {
	p.out.emit(b, p.cfg.Clock.Now())
	select {
	case p.outKick <- struct{}{}:
	default: // a kick is pending; RunAlone takes this output with it
	}
}

// Epoch returns the last captured epoch.
func (p *Primary) Epoch() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch
}

// RunAlone runs checkpoints with no secondary until stop is closed: output
// is sealed every epoch and held, unless this primary was promoted and no
// secondary of its has yet held a complete copy: then no copy anywhere
// waits for an acknowledgement, and output is released as soon as it is emitted
// rather than at the epoch's end (after a failover, the wait for the next
// epoch was part of the gap the outside world saw). On stop it seals and
// releases once more, so everything emitted before stop is out.
func (p *Primary) RunAlone(stop <-chan struct{}) {
	next := p.cfg.Clock.Now().Add(p.cfg.Epoch)
	for {
		stopped := false
		tick := p.cfg.Clock.After(next.Sub(p.cfg.Clock.Now()))
		for waiting := true; waiting; {
			select {
			case <-stop:
				stopped, waiting = true, false
			case <-p.outKick:
				p.releaseDirect()
			case <-tick:
				waiting = false
			}
		}
		next = maxTime(next.Add(p.cfg.Epoch), p.cfg.Clock.Now())
		p.mu.Lock()
		p.epoch++
		e, direct := p.epoch, p.directLocked()
		p.mu.Unlock()
		p.guest.Pause()
		p.out.seal(e)
		p.guest.Resume()
		if direct {
			p.release(e, time.Time{}, nil, nil)
		}
		if stopped {
			return
		}
	}
}

// directLocked reports whether output is released without
// acknowledgements: this primary was promoted and no secondary of its has
// yet held a complete copy. p.mu is held.
func (p *Primary) directLocked() bool { return p.direct && !p.protected }

// releaseDirect releases the output emitted so far if this primary
// releases without acknowledgements (directLocked).
func (p *Primary) releaseDirect() {
	p.mu.Lock()
	e, direct := p.epoch, p.directLocked()
	p.mu.Unlock()
	if direct {
		p.out.seal(e) // sealed after epoch e's own output, released with it
		p.release(e, time.Time{}, nil, nil)
	}
}

// Serve runs one session with a secondary over rw until it fails. The first
// session starts with a brownout sync; later ones resync in groups across
// checkpoints (F7). It returns why the session ended.
func (p *Primary) Serve(rw io.ReadWriteCloser) error {
	defer rw.Close()
	p.mu.Lock()
	gen := p.cfg.Generation
	p.mu.Unlock()
	me := wire.Hello{Role: wire.RolePrimary, Generation: gen, Pages: uint64(p.mem.NumPages())}
	s, peer, err := handshake(rw, p.cfg.PSK, me, p.cfg.Clock, p.cfg.Heartbeat)
	if err != nil {
		return err
	}
	if peer.Generation > gen {
		return fmt.Errorf("%w: peer knows generation %d, we are %d", ErrFenced, peer.Generation, gen)
	}
	p.mu.Lock()
	first := !p.served && p.epoch == 0
	p.served = true
	p.mu.Unlock()
	clear(p.state) // the new secondary starts from zeroed memory
	clear(p.tags)
	ps := &pSession{session: s, p: p, endSent: make(map[uint64]time.Time), syncStart: p.cfg.Clock.Now(),
		outSent: p.out.releasedThrough(), relKick: make(chan struct{}, 1)}
	s.revoke = ps.revoke
	ps.startInput()
	defer ps.stopInput()
	// A primary drops a silent secondary only after twice the deadline.
	// Dropping it closes the link, which a secondary that was merely not
	// scheduled takes for the primary's death and promotes at once (a
	// false failover); waiting longer costs nothing, since without acks
	// nothing is released anyway, and only delays a new secondary.
	s.patience = primaryPatience * p.cfg.Heartbeat.Deadline()
	go s.heartbeats(p.cfg.Clock)
	go ps.readLoop()
	go ps.releaser()
	if first {
		err = ps.brownout()
	} else {
		ps.resyncing = true
		ps.begin()
	}
	if err == nil {
		err = ps.run()
	}
	s.fail(err)
	<-s.done
	return s.err
}

// primaryPatience is how many heartbeat deadlines of silence a primary
// waits before it drops its secondary.
const primaryPatience = 2

// pSession is the primary's side of one session.
type pSession struct {
	*session
	p       *Primary
	open    uint64 // epoch whose BEGIN was sent
	groups  uint32 // GROUP frames sent in the open epoch
	records uint32 // page records sent in the open epoch
	g       wire.GroupWriter
	gbuf    []byte
	free    chan []byte // group buffers not queued for the wire
	// per epoch, for the wire-bytes statistic: bytes on the wire when it
	// opened, pages forwarded and captured (the raw dirty bytes)
	epochWire0 int64
	epochDirty int
	scratch    [PageSize]byte
	diff       pagediff.Differ // deltas against the shadow, without allocating
	dirty      []uint32
	blobs      []Blob
	resyncing  bool
	cursor     int          // resync: pages below this have been sent
	outSent    uint64       // output stream offset sent to this secondary so far
	zbuf       []byte       // a compressed group under construction
	zskip      int          // groups still to send without trying compression
	zbackoff   int          // groups skipped after the last that did not pay
	inputs     chan []byte  // INPUT records waiting for the wire (input.go)
	inputBytes atomic.Int64 // their bytes

	mu       sync.Mutex
	endSent  map[uint64]time.Time
	complete bool
	// completeSent: an END saying complete went out (run loop only).
	completeSent bool
	syncStart    time.Time
	// The newest acknowledged epoch whose output may be released, and its
	// lease, handed from the reader to the releaser (see releaser).
	relEpoch uint64
	relLease time.Time
	relKick  chan struct{} // 1-buffered: a release is pending
	revoked  atomic.Bool   // the session failed: release nothing more on its acks
}

// revoke withdraws this session's release right before its link closes:
// once it returns, no write to the sink happens on this session's acks.
func (ps *pSession) revoke() {
	ps.revoked.Store(true)
	ps.p.relMu.Lock() // wait out a write under way
	ps.p.relMu.Unlock()
}

// run is the protected-operation loop: a checkpoint every epoch.
func (ps *pSession) run() error {
	p := ps.p
	epoch := p.cfg.Epoch
	next := p.cfg.Clock.Now().Add(epoch)
	for {
		if err := ps.failed(); err != nil {
			return err
		}
		if ps.resyncing {
			if err := ps.resyncChunk(); err != nil {
				return err
			}
		}
		if p.cfg.Forward || p.cfg.Hook != nil {
			sleepUntil(p.cfg.Clock, ps.done, next.Add(-epoch/2))
			p.cfg.hook(PointMidEpoch, ps.open)
			if p.cfg.Forward {
				if err := ps.forward(); err != nil {
					return err
				}
				// A second, late forward leaves the pause only the pages
				// dirtied in the last sixth of the epoch.
				sleepUntil(p.cfg.Clock, ps.done, next.Add(-epoch/6))
				if err := ps.forward(); err != nil {
					return err
				}
			}
		}
		sleepUntil(p.cfg.Clock, ps.done, next)
		now := p.cfg.Clock.Now()
		if now.Sub(next) > epoch/2 {
			// Late: this loop was not scheduled, or the link was slow to
			// take the forwarded pages, and the guest kept writing.
			// Forward what it wrote meanwhile while it runs, so that the
			// pause copies only what it writes during that forward rather
			// than everything since the last one.
			p.Stats.lateCheckpoint()
			if p.cfg.Forward {
				if err := ps.forward(); err != nil {
					return err
				}
			}
		}
		if now.Sub(next) > epoch {
			next = now // fell behind (e.g. a slow link): do not burst
		}
		next = next.Add(epoch)
		if err := ps.checkpoint(); err != nil {
			return err
		}
	}
}

// sleepUntil waits until t on c, or until done is closed (the session
// ended: its loop must not linger for the rest of an epoch).
func sleepUntil(c Clock, done <-chan struct{}, t time.Time) {
	if d := t.Sub(c.Now()); d > 0 {
		select {
		case <-c.After(d):
		case <-done:
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// readLoop handles ACKs and heartbeats from the secondary.
func (ps *pSession) readLoop() {
	for {
		f, err := ps.rd.Next()
		if err != nil {
			ps.fail(linkError("secondary", err))
			return
		}
		ps.live.heard()
		switch f.Type {
		case wire.THeartbeat:
		case wire.TAck:
			if err := ps.acked(f.Epoch, f.Payload); err != nil {
				ps.fail(err)
				return
			}
		case wire.TBye:
			ps.fail(fmt.Errorf("%w: secondary said bye: %q", ErrPeerLost, f.Payload))
			return
		default:
			ps.fail(fmt.Errorf("%w: primary got %v", ErrProtocol, f.Type))
			return
		}
	}
}

// acked handles ACK(e): output of epochs ≤ e is released if the secondary's
// copy is complete and the lease for e still holds.
func (ps *pSession) acked(e uint64, payload []byte) error {
	if len(payload) != 1 {
		return fmt.Errorf("%w: ACK payload %d bytes", ErrProtocol, len(payload))
	}
	p := ps.p
	now := p.cfg.Clock.Now()
	ps.mu.Lock()
	sent, ok := ps.endSent[e]
	for k := range ps.endSent {
		if k <= e {
			delete(ps.endSent, k)
		}
	}
	first := !ps.complete && payload[0]&1 != 0
	if payload[0]&1 != 0 {
		ps.complete = true
	}
	ps.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: ACK for epoch %d never sent", ErrProtocol, e)
	}
	if first {
		p.Stats.syncDone(now, now.Sub(ps.syncStart), p.mem.NumPages())
		p.mu.Lock()
		p.protected = true
		p.mu.Unlock()
	}
	if payload[0]&1 == 0 {
		return nil // still syncing: nothing is protected yet
	}
	p.Stats.ack(now.Sub(sent))
	if now.Sub(sent) >= p.cfg.Heartbeat.Lease() {
		p.Stats.leaseMiss()
		return nil // too late to be sure the secondary has not promoted
	}
	p.cfg.hook(PointAcked, e)
	ps.mu.Lock()
	if e > ps.relEpoch {
		ps.relEpoch, ps.relLease = e, sent.Add(p.cfg.Heartbeat.Lease())
	}
	ps.mu.Unlock()
	select {
	case ps.relKick <- struct{}{}:
	default: // a release is already pending; it will take the newest epoch
	}
	return nil
}

// releaseUnprotected releases epoch e's output without an acknowledgement
// when no node can take over from an earlier epoch: this primary was
// promoted, no secondary of its has held a complete copy, and this
// session has not yet sent a complete END (a secondary can take over only
// from a complete epoch, the first of which is e or later and holds
// everything e emitted). A promoted primary resyncing its first secondary
// thus keeps the guest's output flowing, as it did alone (RunAlone),
// instead of holding it for the whole resync and releasing it in a burst.
func (ps *pSession) releaseUnprotected(e uint64) {
	p := ps.p
	p.mu.Lock()
	direct := p.directLocked()
	p.mu.Unlock()
	if !direct || ps.completeSent {
		return
	}
	ps.mu.Lock()
	if e > ps.relEpoch {
		ps.relEpoch, ps.relLease = e, time.Time{} // no lease: no acknowledgement involved
	}
	ps.mu.Unlock()
	select {
	case ps.relKick <- struct{}{}:
	default:
	}
}

// releaser writes acknowledged output to the sink. It runs apart from the
// reader so that a slow sink (a full NIC queue) cannot stop the reading of
// ACKs and heartbeats, which would get a healthy secondary dropped. Acks
// that arrive while a release is under way are merged: the newest epoch
// and its (later) lease cover all older ones.
func (ps *pSession) releaser() {
	p := ps.p
	var done uint64
	for {
		select {
		case <-ps.relKick:
		case <-ps.done:
			return
		}
		ps.mu.Lock()
		e, lease := ps.relEpoch, ps.relLease
		ps.mu.Unlock()
		if e <= done {
			continue
		}
		done = e
		before := p.out.releasedThrough()
		p.release(e, lease, ps.revoked.Load, func() { p.cfg.hook(PointMidRelease, e) })
		p.cfg.hook(PointReleased, e)
		// Tell the secondary at once, not only in the next BEGIN (which
		// went out before this ACK came): a takeover then replays only
		// what may not have been released. After a resync the first
		// complete ACK releases every epoch held meanwhile, and without
		// this a takeover in the next epoch repeated all of them.
		// A release made before the secondary acknowledged a complete
		// copy (releaseUnprotected) can run ahead of the END that carries
		// its output; BEGIN tells such a secondary, which cannot take over
		// yet anyway.
		ps.mu.Lock()
		complete := ps.complete
		ps.mu.Unlock()
		if rel := p.out.releasedThrough(); rel > before && complete && !ps.revoked.Load() {
			if err := ps.send(wire.TRelease, e, wire.AppendU64(nil, rel)); err != nil {
				return
			}
		}
	}
}

// release sends every sealed output of epochs ≤ e to the sink, checking
// before each write that the lease (if not zero) still holds and that the
// right to release was not revoked (if revoked is set).
func (p *Primary) release(e uint64, lease time.Time, revoked func() bool, between func()) {
	p.relMu.Lock()
	defer p.relMu.Unlock()
	outs := p.out.releasable(e)
	for i, o := range outs {
		if revoked != nil && revoked() {
			p.out.unrelease(outs[i:])
			return
		}
		if !lease.IsZero() && !p.cfg.Clock.Now().Before(lease) {
			p.out.unrelease(outs[i:])
			p.Stats.leaseMiss()
			return
		}
		if i == 0 && between != nil && !p.cfg.WholeReleases && len(o.data) > 1 {
			h := len(o.data) / 2
			if err := p.sink.Release(o.off, o.data[:h]); err != nil {
				p.out.unrelease(outs)
				p.Stats.sinkError(err)
				return
			}
			p.out.setReleased(o.off + uint64(h))
			between()
			o.off, o.data = o.off+uint64(h), o.data[h:]
			outs[0] = o
		}
		if err := p.sink.Release(o.off, o.data); err != nil {
			p.out.unrelease(outs[i:])
			p.Stats.sinkError(err)
			return
		}
		now := p.cfg.Clock.Now()
		p.out.setReleased(o.off + uint64(len(o.data)))
		p.Stats.released(now, o.marks)
	}
}
