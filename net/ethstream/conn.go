package ethstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Errors of Open and of a Conn's methods.
var (
	// ErrTimeout: data or a close was outstanding and the peer
	// acknowledged nothing for Config.GiveUp; the Conn has failed.
	ErrTimeout = errors.New("ethstream: peer stopped acknowledging")
	// ErrClosed: the Conn was closed (it wraps net.ErrClosed, as the
	// standard library's connections do).
	ErrClosed = fmt.Errorf("ethstream: connection closed: %w", net.ErrClosed)
	// ErrPeerClosed: Write after the peer closed its end (nobody reads
	// there any more).
	ErrPeerClosed = errors.New("ethstream: peer closed the connection")
	// ErrSessionInUse: Open of a session that has a Conn open.
	ErrSessionInUse = errors.New("ethstream: session already open")
	// ErrConfig: Open of a bad Config, or over a Wire whose MTU is out of
	// range.
	ErrConfig = errors.New("ethstream: bad configuration")
)

// deadlineError is what Read and Write return when their deadline
// passes: a net.Error whose Timeout is true, matching
// os.ErrDeadlineExceeded as the standard library's connections do.
type deadlineError struct{}

func (deadlineError) Error() string        { return "ethstream: i/o timeout" }
func (deadlineError) Timeout() bool        { return true }
func (deadlineError) Temporary() bool      { return true }
func (deadlineError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

var _ net.Error = deadlineError{}

// Defaults and bounds of a Config.
const (
	defaultBuffer = 4 << 20
	defaultGiveUp = 60 * time.Second
	// minWindow is the fewest frames a buffer holds (a smaller
	// configured buffer is rounded up to it), and the window a sender
	// assumes before it hears from the peer.
	minWindow = 16
	// minMTU and maxMTU bound the Wire's MTU: the header and some
	// payload must fit, and the payload length field is 16 bits.
	minMTU = 128
	maxMTU = 65535
)

// Config describes one end of a stream.
type Config struct {
	// Local and Peer are the MAC addresses of this end and the other:
	// frames go to Peer from Local, and only frames from Peer to Local are
	// taken.
	Local, Peer [6]byte
	// Session tells this stream's frames from others' (nonzero; both ends
	// use the same one, agreed out of band). Frames of other sessions are
	// ignored and counted. Use a new session for each connection: a frame
	// of an earlier connection with the same session, still in flight,
	// would be taken as this one's.
	Session uint32
	// SendBuffer and ReceiveBuffer are the buffers' sizes in bytes (0:
	// 4 MiB each). They are kept as whole frames of the Wire's MTU, at
	// least 16; the receive buffer is the window the peer may fill.
	SendBuffer, ReceiveBuffer int
	// GiveUp is how long the Conn waits, with data or a close
	// outstanding, for any acknowledgement progress before it fails
	// (Read and Write then return an error wrapping ErrTimeout). 0 means
	// 60 s. It also bounds how long a closed Conn keeps delivering its
	// last data in the background.
	GiveUp time.Duration
}

func (cfg *Config) check() error {
	var zero [6]byte
	switch {
	case cfg.Session == 0:
		return fmt.Errorf("ethstream: session 0: %w", ErrConfig)
	case cfg.Local == zero || cfg.Peer == zero:
		return fmt.Errorf("ethstream: zero MAC address: %w", ErrConfig)
	case cfg.Local == cfg.Peer:
		return fmt.Errorf("ethstream: local and peer MAC are both %v: %w", Addr(cfg.Local), ErrConfig)
	case cfg.Local[0]&1 != 0 || cfg.Peer[0]&1 != 0:
		return fmt.Errorf("ethstream: multicast MAC address: %w", ErrConfig)
	case cfg.SendBuffer < 0 || cfg.ReceiveBuffer < 0:
		return fmt.Errorf("ethstream: negative buffer size: %w", ErrConfig)
	case cfg.GiveUp < 0:
		return fmt.Errorf("ethstream: negative GiveUp: %w", ErrConfig)
	}
	return nil
}

// Addr is an Ethernet address as a net.Addr.
type Addr [6]byte

// Network is "ether".
func (Addr) Network() string { return "ether" }

// String is the MAC in the usual form, 02:00:00:00:00:01.
func (a Addr) String() string { return net.HardwareAddr(a[:]).String() }

// Stats are a Conn's counters.
type Stats struct {
	// DataFramesSent counts data frames handed to the wire,
	// retransmissions included; BytesSent counts stream bytes sent for
	// the first time.
	DataFramesSent, BytesSent uint64
	// DataFramesReceived counts intact data frames received for the Conn
	// (duplicates included); BytesReceived counts stream bytes received in
	// order, each once.
	DataFramesReceived, BytesReceived uint64
	// FastRetransmits counts frames sent again because the peer's SACK
	// showed them missing (dupThresh later frames arrived, or frames sent
	// later arrived an RTT ago); TimeoutRetransmits those sent again after a
	// retransmission timeout; Timeouts the timeouts themselves.
	FastRetransmits, TimeoutRetransmits, Timeouts uint64
	// SpuriousTimeouts counts timeouts the next acknowledgement showed
	// spurious (a frame of the flight arrived without being resent), so
	// that the rest of the flight was not resent (F-RTO, RFC 5682).
	SpuriousTimeouts uint64
	// TailProbes counts tail-loss probes: the last frame sent again
	// after two RTTs without an acknowledgement, so that a lost tail is
	// found by SACK before the retransmission timeout.
	TailProbes uint64
	// AcksSent counts pure acknowledgements (frames without data); Probes
	// those of them that probed a zero window; CloseFramesSent the close
	// frames, retries included.
	AcksSent, Probes, CloseFramesSent uint64
	// DuplicateFrames counts data or close frames received again;
	// OutOfOrder data frames received beyond a gap (kept); BadFrames
	// intact frames of this session that break the protocol (an
	// acknowledgement of frames never sent, data beyond the window or
	// after the close, an empty data frame): dropped.
	DuplicateFrames, OutOfOrder, BadFrames uint64
	// SendErrors counts frames the Wire refused (treated as lost).
	SendErrors uint64
	// WindowStalls counts times new data waited for the peer's window
	// (its reader fell behind).
	WindowStalls uint64
	// CwndStalls counts times new data waited for the congestion window,
	// and CwndLimited is how long it waited in all (up to the last
	// burst planned): whether the sender or the path set the pace.
	CwndStalls  uint64
	CwndLimited time.Duration
	// Cwnd is the congestion window and PeerWindow the window the peer
	// last advertised, in frames.
	Cwnd, PeerWindow uint64
	// SRTT is the smoothed round-trip time (0 before the first sample)
	// and RTO the retransmission timeout now in force.
	SRTT, RTO time.Duration
}

// Conn is one end of a reliable, ordered byte stream over the Wire. It
// implements net.Conn; its methods are safe for concurrent use.
type Conn struct {
	d      *Demux
	w      Wire
	cfg    Config
	giveUp time.Duration
	epoch  time.Time // sentAt times count from it

	kick      chan struct{} // wakes the goroutine (buffered, 1)
	closedCh  chan struct{} // closed by Close: unblocks Read and Write
	evict     chan struct{} // closed to stop the goroutine at once
	evictOnce sync.Once
	done      chan struct{} // closed when the goroutine has exited
	readSem   chan struct{} // one Read at a time (it copies outside mu)
	writeSem  chan struct{} // one Write at a time (its bytes stay together)

	// The goroutine's own, used without mu.
	ctl    []byte   // buffer for frames without payload
	sumSeq []uint64 // per send slot: 1 + the frame whose payload sum sumVal holds
	sumVal []uint64
	batch  batch

	readBufs [][]byte // Read's, under readSem

	mu            sync.Mutex
	closed        bool
	closedAt      time.Time
	err           error // why the Conn failed
	gone          bool  // the goroutine has exited
	readDeadline  time.Time
	writeDeadline time.Time
	readers       waiters // Read waits for data, EOF or failure
	writers       waiters // Write waits for buffer space
	snd           sender
	rcv           receiver
	st            Stats
}

var _ net.Conn = (*Conn)(nil)

func newConn(d *Demux, cfg Config, mtu int) *Conn {
	if cfg.SendBuffer == 0 {
		cfg.SendBuffer = defaultBuffer
	}
	if cfg.ReceiveBuffer == 0 {
		cfg.ReceiveBuffer = defaultBuffer
	}
	if cfg.GiveUp == 0 {
		cfg.GiveUp = defaultGiveUp
	}
	maxPayload := mtu - headerLen
	c := &Conn{d: d, w: d.w, cfg: cfg, giveUp: cfg.GiveUp, epoch: time.Now(),
		kick: make(chan struct{}, 1), closedCh: make(chan struct{}), evict: make(chan struct{}),
		done: make(chan struct{}), readSem: make(chan struct{}, 1), writeSem: make(chan struct{}, 1),
		ctl: make([]byte, frameOverhead)}
	putEthernet(c.ctl, cfg.Peer, cfg.Local)
	sendFrames := max(minWindow, cfg.SendBuffer/maxPayload)
	c.snd.init(sendFrames, mtu, cfg)
	c.sumSeq = make([]uint64, sendFrames)
	c.sumVal = make([]uint64, sendFrames)
	c.rcv.init(min(maxWindow, max(minWindow, cfg.ReceiveBuffer/maxPayload)))
	c.rcv.recycle = d.recycle
	return c
}

// Read reads stream bytes as they arrive in order: it returns as soon as
// some are there. After the peer's Close it returns io.EOF once
// everything sent before is read.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.acquire(c.readSem); err != nil {
		return 0, err
	}
	defer func() { <-c.readSem }()
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return 0, ErrClosed
		}
		if dl := c.readDeadline; !dl.IsZero() && !time.Now().Before(dl) {
			c.mu.Unlock()
			return 0, deadlineError{}
		}
		if len(p) == 0 {
			c.mu.Unlock()
			return 0, nil
		}
		if c.rcv.readable() {
			break
		}
		if c.rcv.eof {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if c.err != nil {
			c.mu.Unlock()
			return 0, c.err
		}
		c.block(&c.readers, c.readDeadline)
	}
	// The frames before rcv.next are only Read's to change, so the copy
	// (the receive path's one) runs without the lock.
	bufs := c.rcv.take(c.readBufs[:0], len(p))
	c.mu.Unlock()
	n := 0
	for _, b := range bufs {
		n += copy(p[n:], b)
	}
	clear(bufs)
	c.readBufs = bufs[:0]
	c.mu.Lock()
	update := false
	if !c.closed { // else Close dropped the buffered frames meanwhile
		update = c.rcv.consume(n)
	}
	c.mu.Unlock()
	if update {
		c.poke()
	}
	return n, nil
}

// Write queues p in the send buffer, blocking while it is full, and
// returns once all of it is queued (not acknowledged). Bytes go out at
// once: nothing waits for more to fill a frame.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.acquire(c.writeSem); err != nil {
		return 0, err
	}
	defer func() { <-c.writeSem }()
	n := 0
	c.mu.Lock()
	for {
		if err := c.writeErr(); err != nil {
			c.mu.Unlock()
			return n, err
		}
		if n == len(p) {
			c.mu.Unlock()
			return n, nil
		}
		res := c.snd.reserve(len(p) - n)
		if res.bytes == 0 {
			c.block(&c.writers, c.writeDeadline)
			continue
		}
		// The reserved frames are unsent and beyond the buffer's tail:
		// nobody else touches their bytes, so the copy runs without the
		// lock (Deliver may need it meanwhile).
		c.mu.Unlock()
		c.snd.copyIn(res, p[n:n+res.bytes])
		c.mu.Lock()
		if c.closed || c.err != nil || c.rcv.peerClosed {
			// Dropped: the next turn returns the error. The goroutine may
			// have held the close frame back for this Write.
			c.snd.fill = noSeq
			c.poke()
			continue
		}
		c.snd.publish(res, time.Now())
		n += res.bytes
		c.poke()
	}
}

// writeErr is why Write cannot go on now, or nil.
func (c *Conn) writeErr() error {
	switch {
	case c.closed:
		return ErrClosed
	case c.err != nil:
		return c.err
	case c.rcv.peerClosed:
		return ErrPeerClosed
	case !c.writeDeadline.IsZero() && !time.Now().Before(c.writeDeadline):
		return deadlineError{}
	}
	return nil
}

// Close stops the Conn: a blocked Read or Write returns ErrClosed at
// once, and so do later calls. It does not wait for the peer: the Conn's
// goroutine goes on in the background sending what was written and not
// yet acknowledged, then a close frame (a few tries), after which the
// peer's Read returns io.EOF. That background work ends when the peer
// has acknowledged everything, the peer closed too, the close frame went
// unanswered, or Config.GiveUp passed; the session is then unregistered
// (Open of the same session may take it over sooner).
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	now := time.Now()
	c.closed, c.closedAt = true, now
	close(c.closedCh)
	c.rcv.discardBuffered()
	c.snd.startWaiting(now)
	c.readers.wake()
	c.writers.wake()
	c.mu.Unlock()
	c.poke()
	return nil
}

// Abort stops the Conn, for a peer known to be gone. As after Close,
// blocked and later Reads and Writes return ErrClosed; but what was
// written and not yet acknowledged is dropped and no close frame is sent:
// the Conn's goroutine ends before its next frame and unregisters the
// session. Abort after Close ends Close's background work, which would
// otherwise resend to a dead peer until Config.GiveUp. It does not wait
// for the goroutine (which may be waiting out a full NIC ring): the FT
// engine aborts on its way to a takeover.
func (c *Conn) Abort() error {
	c.Close() // ErrClosed if it was closed already: Abort goes on all the same
	c.evictNow()
	return nil
}

// evictable reports whether Open may take over c's session: c was closed
// and is only finishing in the background.
func (c *Conn) evictable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// evictNow stops c's goroutine without waiting for it.
func (c *Conn) evictNow() { c.evictOnce.Do(func() { close(c.evict) }) }

// LocalAddr is Config.Local.
func (c *Conn) LocalAddr() net.Addr { return Addr(c.cfg.Local) }

// RemoteAddr is Config.Peer.
func (c *Conn) RemoteAddr() net.Addr { return Addr(c.cfg.Peer) }

// SetDeadline sets both the read and the write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline makes Read, pending ones included, fail with an error
// matching os.ErrDeadlineExceeded once t has passed (zero: no deadline).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.readDeadline = t
	c.readers.wake() // a waiting Read looks at the new deadline
	return nil
}

// SetWriteDeadline does for Write what SetReadDeadline does for Read. A
// Write that times out may have queued part of its bytes (it returns
// how many).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.writeDeadline = t
	c.writers.wake()
	return nil
}

// Stats returns the Conn's counters.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.Cwnd = c.snd.cwnd
	st.PeerWindow = c.snd.peerWnd
	st.SRTT = c.snd.srtt
	st.RTO = c.snd.rto
	return st
}

// acquire takes sem, or fails if the Conn is closed first.
func (c *Conn) acquire(sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-c.closedCh:
		return ErrClosed
	}
}

// block waits, with c.mu held on entry and on return, until w is woken,
// the deadline passes or the Conn is closed.
func (c *Conn) block(w *waiters, deadline time.Time) {
	ch := w.wait()
	c.mu.Unlock()
	if deadline.IsZero() {
		select {
		case <-ch:
		case <-c.closedCh:
		}
	} else {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-ch:
		case <-c.closedCh:
		case <-t.C:
		}
		t.Stop()
	}
	c.mu.Lock()
}

// poke wakes the Conn's goroutine.
func (c *Conn) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// fail makes the Conn fail with err (under c.mu).
func (c *Conn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
	c.readers.wake()
	c.writers.wake()
}

// waiters lets goroutines wait for a change of the Conn's state; its
// methods run under c.mu. A channel is made only when someone waits, and
// closed to wake them all.
type waiters struct{ ch chan struct{} }

func (w *waiters) wait() <-chan struct{} {
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *waiters) wake() {
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// fmtTimeout is the error of a Conn that gave up on its peer.
func fmtTimeout(c *Conn) error {
	return fmt.Errorf("ethstream: session %#x: no acknowledgement from %v for %v: %w",
		c.cfg.Session, Addr(c.cfg.Peer), c.giveUp, ErrTimeout)
}

// deliver takes a received frame of c's session from the Demux, whose
// payload it is, and reports whether c kept the frame (a data frame
// buffered for Read, which hands it back to the Wire once read).
func (c *Conn) deliver(h *header, frame, payload []byte) (kept bool) {
	var clk clock
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return false
	}
	ok, kick := c.onAck(h, &clk)
	if !ok {
		c.st.BadFrames++
		c.mu.Unlock()
		return false
	}
	switch h.kind {
	case kindData:
		var k bool
		k, kept = c.onData(h, frame, payload, &clk)
		kick = k || kick
	case kindClose:
		kick = c.onClose(h) || kick
	}
	if h.flags&flagAckNow != 0 && !c.rcv.ackNow {
		c.rcv.ackNow = true
		kick = true
	}
	c.mu.Unlock()
	if kick {
		c.poke()
	}
	return kept
}

// clock reads the time once, when first asked: most received frames need
// none (under the doppel kernel on an emulator a clock read costs a
// system call's round trip).
type clock struct {
	t  time.Time
	ok bool
}

func (c *clock) now() time.Time {
	if !c.ok {
		c.t, c.ok = time.Now(), true
	}
	return c.t
}
