package ftmirror

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/pagediff"
	"github.com/doppel-ft/doppel/ftmirror/wire"
)

// Secondary keeps a copy of the guest equal to the primary's last
// committed checkpoint and takes over when the primary is lost.
type Secondary struct {
	cfg Config
	mem Memory

	mu         sync.Mutex
	committed  uint64 // last committed epoch (0: none)
	primaryGen uint64 // the generation the primary announced
	lastOut    uint64 // output offset where the last committed epoch's output starts
	prevOut    uint64 // and where the one before's does
	complete   bool   // memory holds every page as of committed
	blobs      []Blob // state at committed
	outLog     outputLog
	outEnd     uint64 // the committed guest's output stream end
	touched    bool   // memory may be non-zero
	undo       *undoLog
	open       uint64 // epoch being applied (0: none)
	groups     uint32
	records    uint32
	recs       []wire.Record
	scratch    [PageSize]byte
	lastHeard  time.Time
	endedAt    time.Time // when the last session ended
	lastErr    error
	Applied    int64 // words written by apply, for tests and stats
}

// NewSecondary returns a secondary over zeroed memory.
func NewSecondary(cfg Config, mem Memory) *Secondary {
	cfg.defaults()
	alloc := cfg.Alloc
	if alloc == nil {
		alloc = func(n int) []byte { return make([]byte, n) }
	}
	return &Secondary{cfg: cfg, mem: mem, undo: newUndoLog(alloc)}
}

// Serve runs one session with a primary over rw until it ends, and returns
// why. The open epoch, if any, is rolled back before Serve returns, so the
// memory is always the last committed epoch afterwards.
func (s *Secondary) Serve(rw io.ReadWriteCloser) error {
	defer rw.Close()
	me := wire.Hello{Role: wire.RoleSecondary, Generation: s.cfg.Generation, Pages: uint64(s.mem.NumPages())}
	ss, peer, err := handshake(rw, s.cfg.PSK, me, s.cfg.Clock, s.cfg.Heartbeat)
	if err != nil {
		return err
	}
	go ss.heartbeats(s.cfg.Clock)
	s.reset()
	s.mu.Lock()
	s.primaryGen = peer.Generation
	s.mu.Unlock()
	err = s.readLoop(ss)
	ss.fail(err)
	s.mu.Lock()
	s.rollback()
	s.lastHeard = ss.live.lastHeard()
	s.endedAt = s.cfg.Clock.Now()
	s.lastErr = ss.err
	s.mu.Unlock()
	return ss.err
}

// reset forgets everything: a new session resends all of memory.
func (s *Secondary) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.touched {
		for pfn := 0; pfn < s.mem.NumPages(); pfn++ {
			clear(s.mem.Page(uint32(pfn)))
		}
	}
	s.committed, s.complete, s.blobs, s.open, s.outEnd = 0, false, nil, 0, 0
	s.outLog = outputLog{}
	s.undo.commit()
}

// readLoop runs a three-stage pipeline: one goroutine reads frames off
// the link, one checks them (MAC, sequence), and this one applies them,
// so that later groups are received and checked while one is applied (F4).
func (s *Secondary) readLoop(ss *session) error {
	type item struct {
		b   []byte
		f   wire.Frame
		err error
	}
	raw := make(chan item, 2)
	checked := make(chan item, 2)
	dz, err := wire.NewDecompressor()
	if err != nil {
		return err
	}
	defer dz.Close()
	// Inflated groups, used in turn: while the checker fills one, at most
	// two wait in checked and one is being applied.
	var inflated [4][]byte
	nz := 0
	go func() {
		defer close(raw)
		for {
			b, err := ss.rd.NextRaw()
			select {
			case raw <- item{b: b, err: err}:
			case <-ss.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(checked)
		for it := range raw {
			if it.err == nil {
				it.f, it.err = ss.codec.Open(it.b)
			}
			if it.err == nil && it.f.Type == wire.TGroupZ {
				// Inflated here, so that it overlaps the apply of the
				// group before, like the checks.
				b := &inflated[nz%len(inflated)]
				nz++
				if *b, it.err = dz.GroupZ(*b, it.f.Payload); it.err == nil {
					it.f.Type, it.f.Payload = wire.TGroup, *b
				}
			}
			select {
			case checked <- it:
			case <-ss.done:
				return
			}
			if it.err != nil {
				return
			}
		}
	}()
	for it := range checked {
		if it.err != nil {
			if e := ss.failed(); e != nil {
				return e
			}
			return linkError("primary", it.err)
		}
		ss.live.heard()
		ack, err := s.handle(it.f)
		if err != nil {
			return err
		}
		if ack != nil {
			// Sent without s.mu: a link that is slow to take the ACK must
			// not hold up Committed or the end of the session. The
			// commit it reports is final, so nothing can change under it.
			if err := ss.send(wire.TAck, ack.epoch, []byte{ack.flags}); err != nil {
				return err
			}
		}
	}
	<-ss.done // the reader stopped because the session ended
	return ss.err
}

// ackOf is an ACK to send once the frame that earned it is handled.
type ackOf struct {
	epoch uint64
	flags byte
}

// handle applies one frame under s.mu; an END returns the ACK to send.
func (s *Secondary) handle(f wire.Frame) (*ackOf, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch f.Type {
	case wire.THeartbeat:
		return nil, nil
	case wire.TBegin:
		rel, err := wire.ParseU64(f.Payload)
		if err != nil {
			return nil, err
		}
		if s.open != 0 || f.Epoch <= s.committed {
			return nil, fmt.Errorf("%w: BEGIN %d with epoch %d open, %d committed", ErrProtocol, f.Epoch, s.open, s.committed)
		}
		s.open, s.groups, s.records = f.Epoch, 0, 0
		s.outLog.trim(rel)
		return nil, nil
	case wire.TGroup:
		if f.Epoch != s.open || s.open == 0 {
			return nil, fmt.Errorf("%w: GROUP for epoch %d, open %d", ErrProtocol, f.Epoch, s.open)
		}
		return nil, s.applyGroup(f.Payload)
	case wire.TEnd:
		if f.Epoch != s.open || s.open == 0 {
			return nil, fmt.Errorf("%w: END for epoch %d, open %d", ErrProtocol, f.Epoch, s.open)
		}
		if err := s.commit(f.Payload); err != nil {
			return nil, err
		}
		a := &ackOf{epoch: s.committed}
		if s.complete && s.outLog.end() == s.outEnd {
			a.flags = 1 // memory and every output byte of the committed guest
		}
		return a, nil
	case wire.TRelease:
		rel, err := wire.ParseU64(f.Payload)
		if err != nil {
			return nil, err
		}
		if rel > s.outLog.end() {
			return nil, fmt.Errorf("%w: RELEASE through %d, committed output ends at %d", ErrProtocol, rel, s.outLog.end())
		}
		s.outLog.trim(rel)
		return nil, nil
	case wire.TInput:
		if s.cfg.Input != nil {
			s.cfg.Input(f.Payload)
		}
		return nil, nil
	case wire.TBye:
		return nil, fmt.Errorf("%w: primary said bye: %q", ErrPeerLost, f.Payload)
	}
	return nil, fmt.Errorf("%w: secondary got %v", ErrProtocol, f.Type)
}

// applyGroup validates a whole group, then applies it in place, saving each
// page's committed contents first while a committed epoch exists (F4).
func (s *Secondary) applyGroup(p []byte) error {
	idx, recs, err := wire.ParseGroup(p, uint64(s.mem.NumPages()), s.recs)
	s.recs = recs[:0]
	if err != nil {
		return err
	}
	if idx != s.groups {
		return fmt.Errorf("%w: GROUP %d, want %d", ErrProtocol, idx, s.groups)
	}
	for _, r := range recs { // validate every delta before touching memory
		if r.Kind == wire.KindDelta {
			if err := pagediff.ApplyDelta(s.scratch[:], r.Data); err != nil {
				return fmt.Errorf("GROUP %d page %d: %w", idx, r.PFN, err)
			}
		}
	}
	s.touched = true
	for _, r := range recs {
		page := s.mem.Page(r.PFN)
		if s.complete {
			s.undo.save(r.PFN, page)
		}
		switch r.Kind {
		case wire.KindFull:
			s.Applied += int64(pagediff.Apply(page, r.Data))
		case wire.KindZero:
			s.Applied += int64(pagediff.Apply(page, zeroPage[:]))
		case wire.KindDelta:
			pagediff.ApplyDelta(page, r.Data) // validated above
		}
	}
	s.groups++
	s.records += uint32(len(recs))
	return nil
}

var zeroPage [PageSize]byte

// commit makes the open epoch the committed one, if it arrived whole.
func (s *Secondary) commit(p []byte) error {
	e, err := wire.ParseEnd(p)
	if err != nil {
		return err
	}
	if e.Groups != s.groups || e.Pages != s.records {
		return fmt.Errorf("%w: END says %d groups/%d pages, got %d/%d", ErrProtocol, e.Groups, e.Pages, s.groups, s.records)
	}
	switch {
	case len(s.outLog.data) == 0:
		s.outLog.start = e.OutOffset
	case e.OutOffset > s.outLog.end() && !s.complete:
		// A promoted primary releases output while this copy is not
		// complete (doc.go, rule 3) and sends only what it has not
		// released: everything logged so far was released too.
		s.outLog.start, s.outLog.data = e.OutOffset, s.outLog.data[:0]
	case e.OutOffset != s.outLog.end():
		return fmt.Errorf("%w: output at offset %d, log ends at %d", ErrProtocol, e.OutOffset, s.outLog.end())
	}
	s.prevOut, s.lastOut = s.lastOut, s.outLog.end()
	s.outLog.data = append(s.outLog.data, e.Out...)
	s.outEnd = e.OutEnd
	s.blobs = s.blobs[:0]
	for _, b := range e.Blobs {
		s.blobs = append(s.blobs, Blob{ID: b.ID, Version: b.Version, Data: append([]byte(nil), b.Data...)})
	}
	s.undo.commit()
	s.committed, s.open = s.open, 0
	if e.Flags&wire.EndComplete != 0 {
		s.complete = true
	}
	return nil
}

// rollback discards a partly applied epoch. Called with s.mu held.
func (s *Secondary) rollback() {
	if s.open != 0 {
		s.undo.rollback(s.mem)
		s.open = 0
	}
}

// Committed returns the last committed epoch and whether the copy is
// complete.
func (s *Secondary) Committed() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed, s.complete
}

// Takeover describes the guest a promoted secondary resumes.
type Takeover struct {
	Epoch     uint64
	Blobs     []Blob
	OutOffset uint64 // stream offset of Out[0]
	Out       []byte // committed output the primary may not have released
	OutEnd    uint64 // the stream position the resumed guest continues from
	// Generation is the promoted node's: one more than its primary's, so
	// a second failover carries 3, and so on (a primary meeting a peer of
	// a newer generation is fenced).
	Generation uint64
	// LastEpochOut and PrevEpochOut are where the output of the last
	// committed epoch and of the one before start in the stream. A replay
	// from OutOffset repeats what the world saw of [OutOffset, OutEnd):
	// at most the output of the primary's last release, whose RELEASE
	// frame it did not live to send. That release is of the last
	// committed epoch, or of the one before when the primary had sent the
	// next END before it handled the ACK (the two overlap), so a repeat
	// starts at or after PrevEpochOut.
	LastEpochOut, PrevEpochOut uint64
}

// PromoteAt is the earliest time the secondary may promote itself after
// its session ended: at once if the primary closed or reset the link (its
// process is gone, or it withdrew its release right before closing), else
// the heartbeat deadline after it last heard the primary (doc.go, "Split
// brain").
func (s *Secondary) PromoteAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if closedByPeer(s.lastErr) {
		return s.endedAt
	}
	return s.lastHeard.Add(s.cfg.Heartbeat.Deadline())
}

// LastHeard is when the primary's bytes last arrived in the last session.
func (s *Secondary) LastHeard() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastHeard
}

// Takeover returns the committed guest for promotion. It must be called
// after Serve returned and not before PromoteAt (doc.go, "Split brain").
func (s *Secondary) Takeover() (Takeover, error) {
	if now := s.cfg.Clock.Now(); now.Before(s.PromoteAt()) {
		return Takeover{}, fmt.Errorf("ftmirror: takeover %v before the heartbeat deadline", s.PromoteAt().Sub(now))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.complete {
		return Takeover{}, ErrIncomplete
	}
	if s.outLog.end() != s.outEnd {
		return Takeover{}, fmt.Errorf("%w: output mirrored to %d of %d", ErrIncomplete, s.outLog.end(), s.outEnd)
	}
	return Takeover{Epoch: s.committed, Blobs: s.blobs, OutOffset: s.outLog.start,
		Out: s.outLog.data, OutEnd: s.outLog.end(), Generation: s.primaryGen + 1,
		LastEpochOut: s.lastOut, PrevEpochOut: s.prevOut}, nil
}
