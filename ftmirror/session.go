package ftmirror

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/wire"
)

// Errors returned by sessions.
var (
	ErrPeerLost   = errors.New("ftmirror: peer lost")
	ErrProtocol   = errors.New("ftmirror: protocol violation")
	ErrFenced     = errors.New("ftmirror: a newer generation exists; this primary is fenced")
	ErrIncomplete = errors.New("ftmirror: secondary holds no complete committed epoch; cannot take over")
	ErrMismatch   = errors.New("ftmirror: peers disagree on guest memory size")
	// ErrHandshake: the peer did not complete the HELLO exchange within
	// Heartbeat.Handshake; the link was closed.
	ErrHandshake = errors.New("ftmirror: no HELLO from the peer in time")
)

// peerGone reports whether a link error means the peer's end is gone: the
// stream ended (between frames or mid-frame) or the connection was reset or
// broken. On the FT link (a direct cable, no middlebox) that happens only
// when the peer's process or host died or the peer closed the session.
func peerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, io.ErrClosedPipe)
}

// linkError maps an error reading or writing the link to what it means for
// the session: a peer that is gone (see peerGone) is ErrPeerLost, wrapping
// the cause; anything else (a refused frame) is returned as is.
func linkError(who string, err error) error {
	if err == nil || errors.Is(err, ErrPeerLost) || !peerGone(err) {
		return err
	}
	return fmt.Errorf("%w: %s closed the link: %w", ErrPeerLost, who, err)
}

// Point names a place in the protocol where a test or the simulator may
// inject a fault (Config.Hook); the simulator kills the process there.
type Point string

const (
	PointSyncRound     Point = "sync-round"     // a brownout round starts (epoch arg: round)
	PointBlackout      Point = "blackout"       // guest paused for the sync's last checkpoint
	PointBegin         Point = "begin"          // BEGIN sent
	PointMidEpoch      Point = "mid-epoch"      // guest running, half an epoch in
	PointPaused        Point = "paused"         // guest paused for a checkpoint
	PointMidGroup      Point = "mid-group"      // half of a GROUP frame written
	PointBetweenGroups Point = "between-groups" // first GROUP of a checkpoint sent, more to come
	PointBeforeEnd     Point = "before-end"     // all GROUPs sent, END not yet
	PointAfterEnd      Point = "after-end"      // END sent, no ACK yet
	PointAcked         Point = "acked"          // ACK received, nothing released
	PointMidRelease    Point = "mid-release"    // part of the acked output released
	PointReleased      Point = "released"       // acked output released
	PointResync        Point = "resync"         // a resync chunk was sent (F7)
)

// readRing is how many received frames may be in flight between a
// session's reading goroutine and the one applying them.
const readRing = 8

// session is one authenticated connection between a primary and a
// secondary. One goroutine reads; writes are serialised by wmu.
type session struct {
	clock Clock
	rw    io.ReadWriteCloser
	codec *wire.Codec
	rd    *wire.Reader
	live  *liveness
	hb    Heartbeat
	// patience is the silence after which this side ends the session:
	// the deadline, or more for a primary (see Primary.Serve).
	patience time.Duration

	wmu      sync.Mutex
	out      chan outFrame
	lastSent atomic.Int64
	wireOut  atomic.Int64 // bytes written

	once sync.Once
	err  error
	done chan struct{}
	// revoke, if set, is called when the session fails, before the link
	// is closed: the primary gives up its right to release output on
	// this session's acks, so that a peer seeing the link close may
	// promote itself at once (doc.go, "Failure detection").
	revoke func()
}

// handshake exchanges HELLOs and derives the session key. The primary
// speaks first. It returns the session and the peer's hello. A peer that
// has not sent its HELLO within hb.Handshake() ends it with ErrHandshake:
// the link is closed, which ends the read waiting for it.
func handshake(rw io.ReadWriteCloser, psk []byte, me wire.Hello, clock Clock, hb Heartbeat) (*session, wire.Hello, error) {
	// pending, done or expired: whichever of the exchange and the timer
	// moves it from pending first has the link.
	const (
		pending = iota
		done
		expired
	)
	var state atomic.Int32
	// Wall time, not the session's Clock: it only guards against a dead
	// peer, and tests that step a fake clock need not step it.
	timer := time.AfterFunc(hb.Handshake(), func() {
		if state.CompareAndSwap(pending, expired) {
			rw.Close()
		}
	})
	defer timer.Stop()
	s, peer, err := exchangeHellos(rw, psk, me, clock, hb)
	if !state.CompareAndSwap(pending, done) {
		// The cause is only text: a link closed by the timer is not the
		// peer closing it (ErrPeerLost), which lets a secondary promote.
		return nil, peer, fmt.Errorf("%w: %v (%v)", ErrHandshake, hb.Handshake(), err)
	}
	if err != nil {
		return nil, peer, err
	}
	go s.writer()
	return s, peer, nil
}

// exchangeHellos is handshake's exchange, without its bound.
func exchangeHellos(rw io.ReadWriteCloser, psk []byte, me wire.Hello, clock Clock, hb Heartbeat) (*session, wire.Hello, error) {
	dir := wire.PrimaryToSecondary
	if me.Role == wire.RoleSecondary {
		dir = wire.SecondaryToPrimary
	}
	c, err := wire.NewCodec(psk, dir)
	if err != nil {
		return nil, wire.Hello{}, err
	}
	me.Flags |= wire.LocalHelloFlags()
	if _, err := rand.Read(me.Nonce[:]); err != nil {
		return nil, wire.Hello{}, err
	}
	lr := &liveReader{r: rw}
	s := &session{clock: clock, rw: rw, codec: c, rd: wire.NewReaderRing(lr, c, readRing), hb: hb,
		patience: hb.Deadline(), done: make(chan struct{}), out: make(chan outFrame, 8)}
	send := func() error {
		f, err := c.Append(nil, wire.THello, 0, me.Append(nil))
		if err == nil {
			_, err = rw.Write(f)
		}
		return err
	}
	if me.Role == wire.RolePrimary {
		if err := send(); err != nil {
			return nil, wire.Hello{}, err
		}
	}
	f, err := s.rd.Next()
	if err != nil {
		return nil, wire.Hello{}, fmt.Errorf("handshake: %w", linkError("peer", err))
	}
	if f.Type != wire.THello {
		return nil, wire.Hello{}, fmt.Errorf("%w: handshake got %v", ErrProtocol, f.Type)
	}
	peer, err := wire.ParseHello(f.Payload)
	if err != nil {
		return nil, peer, err
	}
	if peer.Role == me.Role {
		return nil, peer, fmt.Errorf("%w: both ends claim role %d", ErrProtocol, me.Role)
	}
	if peer.Pages != me.Pages {
		return nil, peer, fmt.Errorf("%w: %d pages here, %d there", ErrMismatch, me.Pages, peer.Pages)
	}
	if me.Role == wire.RoleSecondary {
		if err := send(); err != nil {
			return nil, peer, err
		}
	}
	pn, sn := me.Nonce[:], peer.Nonce[:]
	if me.Role == wire.RoleSecondary {
		pn, sn = sn, pn
	}
	if err := c.SetSessionKey(wire.SessionKey(psk, pn, sn), wire.ChooseSuite(me, peer)); err != nil {
		return nil, peer, err
	}
	s.live = newLiveness(clock)
	lr.live.Store(s.live)
	return s, peer, nil
}

// liveReader counts any bytes arriving as a sign of life, so a large frame
// on a slow link is not mistaken for silence.
type liveReader struct {
	r    io.Reader
	live atomic.Pointer[liveness]
}

func (l *liveReader) Read(b []byte) (int, error) {
	lv := l.live.Load()
	if lv != nil {
		lv.reading(true)
	}
	n, err := l.r.Read(b)
	if lv != nil {
		if n > 0 {
			lv.heard()
		}
		lv.reading(false)
	}
	return n, err
}

// Aborter is a link that can also end at once, dropping what it has not
// delivered (net/ethstream's Conn), where Close would go on delivering it
// in the background. A session that ends because its peer is lost aborts
// such a link rather than resend to a dead peer for up to a minute.
type Aborter interface {
	Abort() error
}

// fail ends the session with err (the first error wins).
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done) // stops the writer and the heartbeats
		if s.revoke != nil {
			s.revoke()
		}
		if a, ok := s.rw.(Aborter); ok && errors.Is(err, ErrPeerLost) {
			a.Abort()
		} else {
			s.rw.Close()
		}
	})
}

// closedByPeer reports whether a session's error means the peer closed or
// reset the link (rather than falling silent or sending a bad frame).
func closedByPeer(err error) bool {
	return errors.Is(err, ErrPeerLost) && peerGone(err)
}

func (s *session) failed() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// outFrame is a sealed frame queued for the writer goroutine.
type outFrame struct {
	b     []byte
	split func() // fault injection: called after the first half
	done  func() // called once written (returns a buffer to its pool)
}

// writeFrame seals buf (made with wire.Start plus payload) and queues it
// for the writer; sealing and queueing under one lock keep the wire order
// equal to the sequence order. If split is non-nil the frame is written in
// two halves with split called in between (PointMidGroup). done, if set, is
// called once buf is no longer needed.
func (s *session) writeFrame(buf []byte, t wire.Type, epoch uint64, split, done func()) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	f, err := s.codec.Seal(buf, t, epoch)
	if err != nil {
		return err
	}
	s.wireOut.Add(int64(len(f)))
	select {
	case s.out <- outFrame{f, split, done}:
		return nil
	case <-s.done:
		return s.err
	}
}

// drain waits until everything queued so far has been written (used to make
// fault-injection points exact: Config.ExactHooks).
func (s *session) drain() {
	ch := make(chan struct{})
	select {
	case s.out <- outFrame{done: func() { close(ch) }}:
	case <-s.done:
		return
	}
	select {
	case <-ch:
	case <-s.done:
	}
}

// writer writes queued frames in order, so that encoding and sealing the
// next group overlaps with the kernel copying this one.
func (s *session) writer() {
	for {
		var of outFrame
		select {
		case of = <-s.out:
		case <-s.done:
			return
		}
		b := of.b
		if b == nil { // a drain marker
			of.done()
			continue
		}
		if of.split != nil {
			h := len(b) / 2
			if _, err := s.rw.Write(b[:h]); err != nil {
				s.fail(fmt.Errorf("%w: write: %w", ErrPeerLost, err))
				return
			}
			of.split()
			b = b[h:]
		}
		if _, err := s.rw.Write(b); err != nil {
			s.fail(fmt.Errorf("%w: write: %w", ErrPeerLost, err))
			return
		}
		s.lastSent.Store(s.clock.Now().UnixNano())
		if of.done != nil {
			of.done()
		}
	}
}

// send writes a small frame.
func (s *session) send(t wire.Type, epoch uint64, payload []byte) error {
	b := make([]byte, 0, wire.Overhead+len(payload))
	return s.writeFrame(append(wire.Start(b), payload...), t, epoch, nil, nil)
}

// heartbeats sends a HEARTBEAT whenever nothing was sent for an interval,
// and fails the session when the peer has been silent past the deadline.
//
// Silence is counted only for the time this side was itself running: a
// side whose process was not scheduled for a while (a loaded host) wakes
// with its peer's bytes waiting unread in the socket, and its reader may
// not have run yet when this goroutine looks at the clock. So the time this
// goroutine woke late, accumulated since the peer was last heard, is taken
// off the silence. Under load a dead peer is then declared lost later,
// never sooner, and promotion still counts from when the peer was last
// heard (doc.go, "Split brain").
func (s *session) heartbeats(clock Clock) {
	half := s.hb.Interval / 2
	prev, heard := clock.Now(), s.live.lastHeard()
	var stalled time.Duration // own lateness since the peer was last heard
	for {
		select {
		case <-s.done:
			return
		case <-clock.After(half):
		}
		now := clock.Now()
		if late := now.Sub(prev) - half; late > 0 {
			stalled += late
		}
		prev = now
		if h := s.live.lastHeard(); !h.Equal(heard) {
			heard, stalled = h, 0
		}
		if d := s.live.silentFor(); d-stalled > s.patience {
			s.fail(fmt.Errorf("%w: silent for %v (%v of it while this side was not scheduled)",
				ErrPeerLost, d.Round(time.Millisecond), stalled.Round(time.Millisecond)))
			return
		}
		if clock.Now().Sub(time.Unix(0, s.lastSent.Load())) >= s.hb.Interval/2 {
			if err := s.trySend(wire.THeartbeat, 0, wire.AppendU64(nil, uint64(clock.Now().UnixNano()))); err != nil {
				s.fail(err)
				return
			}
		}
	}
}

// trySend queues a small frame only if that cannot block: the failure
// detector must keep checking the deadline while the link's send side is
// stuck (a partition fills the socket buffer and blocks the writer), so a
// heartbeat that would wait is skipped; frames already queued say the same.
func (s *session) trySend(t wire.Type, epoch uint64, payload []byte) error {
	if !s.wmu.TryLock() {
		return nil // another frame is being queued
	}
	defer s.wmu.Unlock()
	if len(s.out) == cap(s.out) {
		return nil // only wmu holders queue, so room now means no wait
	}
	b := make([]byte, 0, wire.Overhead+len(payload))
	f, err := s.codec.Seal(append(wire.Start(b), payload...), t, epoch)
	if err != nil {
		return err
	}
	s.wireOut.Add(int64(len(f)))
	s.out <- outFrame{b: f}
	return nil
}
