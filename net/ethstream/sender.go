package ethstream

import (
	"math"
	"math/bits"
	"time"
)

// Retransmission and congestion control.
const (
	// minRTO and maxRTO bound the retransmission timeout (maxRTO gives
	// way to twice the round trip where that is longer: rtoCap); initRTO is it
	// before the first round-trip sample (RFC 6298's 1 s is for unknown
	// paths: this one is a cable, and frames sent before the peer opened
	// its end are lost and wait for it).
	minRTO  = 10 * time.Millisecond
	maxRTO  = 200 * time.Millisecond
	initRTO = 50 * time.Millisecond
	// unsampledMaxRTO caps the backoff of a stream whose peer answers
	// but has given no round-trip sample yet (rtoCap): RFC 6298's initial
	// timeout.
	unsampledMaxRTO = time.Second
	// granularity is the timer granularity G of RFC 6298's RTO formula
	// (the delayed ack adds as much to a sample).
	granularity = time.Millisecond
	// initCwnd is the congestion window at the start and the least a
	// timeout leaves; minCwnd the least a loss event halves it to.
	initCwnd = 32
	minCwnd  = 4
	// caStep is how many frames the congestion window grows per
	// window of acknowledged frames once past ssthresh: TCP's one is
	// fair to other flows on a shared path, which this link does not
	// have; on it, one spurious timeout at a window of 300 frames took
	// over a second to grow back from at one a round trip (section
	// "Flow and congestion control" of the package doc).
	caStep = 8
	// dupThresh is how many later frames the peer must have received
	// before a missing one is retransmitted.
	dupThresh = 3
	// maxBurst is the most frames the goroutine sends in one burst
	// before it looks at the acknowledgements again.
	maxBurst = 64
	// closeTries is how many times a close frame is sent once all data
	// is acknowledged, before the closed Conn stops trying.
	closeTries = 5
	// writeStep is the most bytes Write copies in between two looks at
	// the sender's state, so the goroutine starts sending early.
	writeStep = 256 << 10
)

// noSeq is a frame number no frame has.
const noSeq = math.MaxUint64

// Per-frame flags of the send buffer.
const (
	slotRetransmitted = 1 << iota // sent more than once: no RTT sample (Karn)
	slotSACKed                    // the peer has it (beyond its ack)
)

// sender is a Conn's sending half, under Conn.mu. The send buffer holds
// whole frames: Write copies bytes into the payload of frames numbered
// from tail on (appending to the last frame while it is unsent), so
// sending one only fills in its header in place, and a retransmission
// is the same frame with fresh acknowledgement fields.
type sender struct {
	n          uint64 // frames in the buffer
	frameCap   int    // bytes per frame in slab: Ethernet header plus MTU
	maxPayload int
	slab       []byte          // frame s at (s%n)*frameCap
	length     []uint16        // payload bytes of each frame
	sentAt     []time.Duration // when each frame was last sent, since Conn.epoch
	flags      []uint8

	una  uint64 // the first frame not acknowledged
	nxt  uint64 // the first frame never sent
	tail uint64 // one past the last frame written
	// fill is the first frame a Write is copying into without the lock
	// (not to be sent yet), noSeq when none.
	fill uint64
	// txLow is the lowest data frame the goroutine is sending without the
	// lock (its buffer not to be reused yet), noSeq when none.
	txLow uint64

	peerRight uint64 // highest ack+window heard: frames below it fit the peer's window
	peerWnd   uint64 // window of the latest acknowledgement
	peerMax   uint64 // largest window heard
	sacked    uint64 // frames in [una, nxt) SACKed
	highSACK  uint64 // one past the highest frame SACKed
	fastCheck bool   // the SACK view changed: look for frames to resend
	// rackTime is the latest send time of a frame known received: a
	// frame sent before it and still missing after an RTT (and a quarter,
	// for reordering) is lost (RACK, RFC 8985, by frame number and time).
	rackTime time.Duration
	rackAt   time.Time // when a frame becomes lost by that rule (zero: none)
	// tlpAt is when the tail-loss probe goes (RFC 8985 section 7): with
	// frames in flight and no acknowledgement for about two RTTs, the
	// last frame is resent, so a lost tail is found by SACK rather than
	// by the retransmission timeout. tlpOut: one was sent this flight.
	tlpAt  time.Time
	tlpOut bool

	cwnd, ssthresh uint64
	caAcked        uint64 // frames acknowledged toward the next cwnd increase
	recover        uint64 // in loss recovery while una is below it: no second halving
	rtxNext        uint64 // after a timeout, frames [rtxNext, rtxEnd) are to be resent in order
	rtxEnd         uint64
	rtoRecover     uint64 // the last timeout's flight ends here: one before una reaches it is a second in a row
	// frtoEnd is nxt at a timeout whose flight may still be on its way
	// (F-RTO, RFC 5682), zero when none is: until an acknowledgement
	// comes, only the first unacknowledged frame is resent. One that
	// covers a frame below frtoEnd never resent shows the flight was
	// only late: the timeout was spurious, nothing more is resent, and
	// the window it halved is restored (frtoCwnd, frtoSsthresh; the
	// Eifel response, RFC 4015). One that covers only resent frames
	// shows the flight lost: the rest of it is resent in order
	// (frtoVerdict says how much).
	frtoEnd                uint64
	frtoCwnd, frtoSsthresh uint64

	srtt, rttvar, rto time.Duration
	rtoAt             time.Time // retransmission timer (zero: stopped)
	lastProgress      time.Time // acknowledgement progress, for GiveUp
	probeAt           time.Time // next zero-window probe (zero: none)
	probeEvery        time.Duration

	stalled bool // the peer's window stopped new data (counted once per stall)
	// cwndSince is when the congestion window last began to hold back
	// new data (zero: it does not now).
	cwndSince time.Time

	closeSeq   uint64 // the close frame's number (tail when it was sent)
	closeSent  bool
	closeAcked bool
	closeSends int
}

func (s *sender) init(frames, mtu int, cfg Config) {
	s.n = uint64(frames)
	s.frameCap = ethHeaderLen + mtu
	s.maxPayload = mtu - headerLen
	s.slab = make([]byte, frames*s.frameCap)
	for i := 0; i < frames; i++ {
		putEthernet(s.slab[i*s.frameCap:], cfg.Peer, cfg.Local)
	}
	s.length = make([]uint16, frames)
	s.sentAt = make([]time.Duration, frames)
	s.flags = make([]uint8, frames)
	s.fill, s.txLow = noSeq, noSeq
	s.peerRight = minWindow
	s.peerWnd = minWindow
	s.cwnd, s.ssthresh = initCwnd, math.MaxUint64
	s.rto = initRTO
}

// reservation is where a Write's next bytes go: from byte off of frame
// first on.
type reservation struct {
	first uint64
	off   int
	bytes int
}

// reserve finds room for up to want bytes and marks it being filled.
// Unless it takes all of want, it ends at a frame's end: only a Write's
// last frame may be short.
func (s *sender) reserve(want int) reservation {
	var r reservation
	r.first = s.tail
	room := 0
	if s.tail > s.nxt {
		if l := int(s.length[(s.tail-1)%s.n]); l < s.maxPayload {
			r.first, r.off = s.tail-1, l // append to the unsent last frame
			room = s.maxPayload - l
		}
	}
	room += int(s.n-(s.tail-min(s.una, s.txLow))) * s.maxPayload
	r.bytes = min(want, room, writeStep)
	if r.bytes < want {
		if end := (r.off + r.bytes) / s.maxPayload * s.maxPayload; end > r.off {
			r.bytes = end - r.off
		}
	}
	if r.bytes > 0 {
		s.fill = r.first
	}
	return r
}

// copyIn copies a Write's bytes into the reserved frames (without the
// lock: only reserved bytes are touched).
func (s *sender) copyIn(r reservation, p []byte) {
	off := r.off
	for seq := r.first; len(p) > 0; seq++ {
		base := int(seq%s.n)*s.frameCap + frameOverhead
		k := copy(s.slab[base+off:base+s.maxPayload], p)
		p = p[k:]
		off = 0
	}
}

// publish makes the copied bytes part of the stream (under the lock).
func (s *sender) publish(r reservation, now time.Time) {
	s.startWaiting(now)
	total := r.off + r.bytes
	for seq := r.first; total > 0; seq++ {
		i := seq % s.n
		l := min(total, s.maxPayload)
		if seq >= s.tail {
			s.flags[i], s.sentAt[i] = 0, 0
			s.tail = seq + 1
		}
		s.length[i] = uint16(l)
		total -= l
	}
	s.fill = noSeq
}

// startWaiting starts the GiveUp clock if nothing was outstanding.
func (s *sender) startWaiting(now time.Time) {
	if s.una == s.tail && !(s.closeSent && !s.closeAcked) {
		s.lastProgress = now
	}
}

// pipe estimates the frames in flight: sent, not acknowledged or SACKed,
// and not waiting to be resent after a timeout.
func (s *sender) pipe() uint64 {
	out := s.nxt - s.una
	gone := s.sacked + (s.rtxEnd - s.rtxNext)
	if gone >= out {
		return 0
	}
	return out - gone
}

// outstanding reports whether the GiveUp clock runs: data or a close
// not yet acknowledged.
func (s *sender) outstanding() bool {
	return s.una < s.tail || s.closeSent && !s.closeAcked
}

// abandon drops all unacknowledged data: the peer closed and will not
// read it.
func (s *sender) abandon() {
	for q := s.una; q < s.nxt; q++ {
		s.flags[q%s.n] = 0
	}
	s.una, s.nxt = s.tail, s.tail
	s.sacked, s.highSACK, s.fastCheck = 0, s.tail, false
	s.rtxNext, s.rtxEnd = s.tail, s.tail
	s.frtoEnd = 0
	s.probeAt = time.Time{}
	if !s.closeSent || s.closeAcked {
		s.rtoAt = time.Time{}
	}
}

// onAck takes the acknowledgement fields every frame carries (under
// c.mu). ok is false for a frame acknowledging frames never sent; kick
// says the goroutine has something new to do.
func (c *Conn) onAck(h *header, clk *clock) (ok, kick bool) {
	s := &c.snd
	// original: this acknowledgement covers a frame of a timed-out
	// flight that was never resent (frtoEnd).
	original, progress := false, false
	sent := s.nxt
	if s.closeSent {
		sent = s.closeSeq + 1
	}
	if h.ack > sent {
		return false, false
	}
	// The receiver's right edge never moves back, so the highest heard is
	// safe even when frames arrive out of order.
	right := h.ack + uint64(h.window)
	if h.ack >= s.una {
		s.peerWnd = uint64(h.window)
	}
	s.peerMax = max(s.peerMax, uint64(h.window))
	if right > s.peerRight {
		if s.nxt >= s.peerRight && s.nxt < s.tail {
			kick = true // the window opened for waiting frames
			s.probeAt = time.Time{}
		}
		s.peerRight = right
	}
	if h.ack > s.una {
		if end := min(h.ack, s.nxt); end > s.una {
			// An RTT sample from the newest frame acknowledged, unless a
			// resent frame among them held the ack back (Karn's rule,
			// widened: the cumulative ack waited for the resent one).
			clean := true
			for q := s.una; q < end; q++ {
				f := s.flags[q%s.n]
				if f&slotSACKed != 0 {
					s.sacked--
				}
				if f&slotRetransmitted != 0 {
					clean = false
				} else if q < s.frtoEnd {
					original = true
				}
			}
			last := (end - 1) % s.n
			if clean {
				c.sampleRTT(clk.now().Sub(c.epoch) - s.sentAt[last])
			}
			s.rackTime = max(s.rackTime, s.sentAt[last])
			s.fastCheck = s.sacked > 0 // a partial ack: the next hole may be due
			acked := end - s.una
			s.una = end
			progress = true
			s.grow(acked)
			s.rtxNext = max(s.rtxNext, s.una)
			s.rtxEnd = max(s.rtxEnd, s.una)
			s.highSACK = max(s.highSACK, s.una)
			c.writers.wake()
			kick = kick || s.nxt < s.tail || s.fastCheck || c.closed
		}
		if s.closeSent && h.ack == s.closeSeq+1 {
			s.closeAcked = true
			kick = true
		}
		now := clk.now()
		s.lastProgress = now
		s.tlpOut = false
		if s.una < s.nxt || s.closeSent && !s.closeAcked {
			s.rtoAt = now.Add(s.rto)
			s.armTLP(now)
		} else {
			s.rtoAt, s.tlpAt = time.Time{}, time.Time{}
		}
	} else if s.nxt < s.tail && right <= s.nxt {
		// Alive, but its reader is not taking data: not a silent peer.
		s.lastProgress = clk.now()
	}
	base := h.sackBase()
	for m := h.sack; m != 0; m &= m - 1 {
		q := base + uint64(bits.TrailingZeros64(m))
		if q < s.una {
			continue
		}
		if q >= s.nxt {
			break
		}
		if i := q % s.n; s.flags[i]&slotSACKed == 0 {
			if s.flags[i]&slotRetransmitted == 0 && q < s.frtoEnd {
				original = true
			}
			progress = true
			s.flags[i] |= slotSACKed
			s.sacked++
			s.rackTime = max(s.rackTime, s.sentAt[i])
			s.highSACK = max(s.highSACK, q+1)
			s.fastCheck = true
			kick = true
		}
	}
	if s.frtoEnd != 0 && progress {
		c.frtoVerdict(original)
		kick = true
	}
	return true, kick
}

// frtoVerdict ends the wait after a timeout (sender.frtoEnd) on the
// first acknowledgement to make progress: original says it covered a
// frame of the flight that was never resent.
func (c *Conn) frtoVerdict(original bool) {
	s := &c.snd
	if original {
		c.st.SpuriousTimeouts++
		s.rtxNext = s.rtxEnd
		s.cwnd = min(max(s.cwnd, s.frtoCwnd), max(s.peerMax, minWindow))
		s.ssthresh = max(s.ssthresh, s.frtoSsthresh)
		s.rtoRecover = s.una // not a timeout in a row if another comes
	} else {
		// Lost. Where the SACK shows frames held beyond the loss, only
		// the frames below the highest of them are resent now: the
		// receiver may hold more past the block its bitmap showed, and
		// the blocks it reports in turn, with the time rule, find the
		// frames above that are lost. With no SACK, the whole flight.
		end := s.frtoEnd
		if s.highSACK > s.una {
			end = min(end, s.highSACK)
		}
		s.rtxNext = max(s.rtxNext, s.una)
		s.rtxEnd = max(s.rtxEnd, end)
	}
	s.frtoEnd = 0
}

// sampleRTT folds one round-trip sample into the estimate (RFC 6298
// section 2) and recomputes the timeout, which also undoes any backoff.
func (c *Conn) sampleRTT(r time.Duration) {
	s := &c.snd
	if r <= 0 {
		r = time.Microsecond
	}
	if s.srtt == 0 {
		s.srtt, s.rttvar = r, r/2
	} else {
		d := s.srtt - r
		if d < 0 {
			d = -d
		}
		s.rttvar = (3*s.rttvar + d) / 4
		s.srtt = (7*s.srtt + r) / 8
	}
	s.rto = min(s.rtoCap(), max(minRTO, s.srtt+max(granularity, 4*s.rttvar)))
}

// rtoCap is the most the timeout may be: maxRTO, or twice the smoothed
// round trip where that is longer. A timeout shorter than the round trip
// fires on every flight, resends frames that are only queued and takes
// away the clean samples that would correct it: between two Bochs
// processes, whose sockets queue frames that each Bochs reads one an
// emulated millisecond, the round trip reached 140-740 ms, and a stream
// under the flat 200 ms cap resent most of its frames. Before the first
// sample, a peer that acknowledges frames (so it is there) but only
// resent ones (Karn's rule leaves no sample) may be that slow path: the
// timeout then backs off up to unsampledMaxRTO until a flight comes back
// without a resend. A peer that has acknowledged nothing yet keeps the
// 200 ms cap, so frames sent before it opened its end are resent soon.
func (s *sender) rtoCap() time.Duration {
	if s.srtt == 0 && s.una > 0 {
		return unsampledMaxRTO
	}
	return max(maxRTO, 2*s.srtt)
}

// armTLP sets the tail-loss probe's timer for frames just sent or
// acknowledged: two smoothed RTTs and the peer's delayed ack from now,
// if that comes before the retransmission timeout. Before the first RTT
// sample there is none.
func (s *sender) armTLP(now time.Time) {
	s.tlpAt = time.Time{}
	if s.srtt == 0 || s.tlpOut {
		return
	}
	if pto := 2*s.srtt + delayedAck + granularity; pto < s.rto {
		s.tlpAt = now.Add(pto)
	}
}

// grow opens the congestion window for acked frames: slow start below
// ssthresh, caStep frames per window above, none during loss recovery, and
// never past the largest window the peer offered (or the smallest any
// peer has, before it said).
func (s *sender) grow(acked uint64) {
	if s.una < s.recover {
		return
	}
	if s.cwnd < s.ssthresh {
		s.cwnd += acked
	} else {
		s.caAcked += acked * caStep
		for s.caAcked >= s.cwnd {
			s.caAcked -= s.cwnd
			s.cwnd++
		}
	}
	s.cwnd = min(s.cwnd, max(s.peerMax, minWindow))
}

// timeout is the response to the retransmission timer with data in
// flight: the window halved, not back to slow start (on this link a
// timeout is mostly a receiver that was not scheduled, an emulator's
// vCPU, not a path that lost its capacity), unless the flight of the
// timeout before is still unacknowledged (then the path really is in
// trouble, and the window goes back to initCwnd); every unacknowledged
// frame the SACK does not cover to be resent in order; the timer backed
// off.
func (s *sender) timeout(now time.Time) {
	again := s.una < s.rtoRecover
	first := s.frtoEnd == 0
	if first {
		s.frtoCwnd, s.frtoSsthresh = s.cwnd, s.ssthresh
	}
	s.rtoRecover = s.nxt
	s.ssthresh = max(s.cwnd/2, minCwnd)
	s.cwnd = min(max(s.ssthresh, initCwnd), max(s.peerMax, minWindow))
	if again {
		s.cwnd = min(initCwnd, max(s.peerMax, minWindow))
	}
	s.caAcked = 0
	s.recover = s.nxt
	if first {
		s.frtoEnd = s.nxt
		s.rtxNext, s.rtxEnd = s.una, s.una+1
	} else {
		// A second timeout with no acknowledgement between: the flight
		// is lost.
		s.frtoEnd = 0
		s.rtxNext, s.rtxEnd = s.una, s.nxt
	}
	s.tlpAt, s.tlpOut, s.rackAt = time.Time{}, false, time.Time{}
	s.rto = min(2*s.rto, s.rtoCap())
	s.rtoAt = now.Add(s.rto)
}

// lossEvent halves the congestion window, once per window of data.
func (s *sender) lossEvent() {
	if s.una < s.recover {
		return
	}
	s.ssthresh = max(s.cwnd/2, minCwnd)
	s.cwnd = s.ssthresh
	s.caAcked = 0
	s.recover = s.nxt
}

// txFrame is one frame of a burst.
type txFrame struct {
	kind   kind
	flags  uint8
	seq    uint64
	length uint16
}

// batch is a burst the goroutine sends without the lock, all with the
// same acknowledgement fields.
type batch struct {
	frames           []txFrame
	ack, window, sak uint64
	sakShift         uint8
	sendErrors       uint64
}

func (b *batch) add(k kind, seq uint64, length uint16) {
	b.frames = append(b.frames, txFrame{kind: k, seq: seq, length: length})
}

// run is the Conn's goroutine: it sends everything (data, retransmissions,
// acks, probes, close frames) in bursts, woken by Write, Read, Deliver
// and its timer, until the Conn fails, or is closed and done.
func (c *Conn) run() {
	defer c.exit()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	b := &c.batch
	for {
		c.mu.Lock()
		now := time.Now()
		exit := c.plan(now, b)
		var wait time.Duration
		if len(b.frames) == 0 && !exit {
			wait = c.nextDeadline(now).Sub(now)
		}
		c.mu.Unlock()
		if exit {
			return
		}
		if len(b.frames) > 0 {
			c.transmit(b)
			select {
			case <-c.evict:
				return
			default:
			}
			continue
		}
		timer.Reset(max(wait, 0))
		select {
		case <-c.kick:
		case <-timer.C:
		case <-c.evict:
			return
		}
	}
}

// exit unregisters the Conn when its goroutine ends.
func (c *Conn) exit() {
	c.mu.Lock()
	c.gone = true
	c.snd.txLow = noSeq
	if !c.closed {
		c.fail(ErrClosed) // not expected: only a failure ends an open Conn
	}
	c.readers.wake()
	c.writers.wake()
	c.mu.Unlock()
	c.d.unregister(c)
	close(c.done)
}

// plan decides the next burst (under c.mu) into b, or that the goroutine
// is done.
func (c *Conn) plan(now time.Time, b *batch) (exit bool) {
	s, r := &c.snd, &c.rcv
	b.frames = b.frames[:0]
	c.st.SendErrors += b.sendErrors
	b.sendErrors = 0
	if s.txLow != noSeq {
		s.txLow = noSeq // the last burst is out: its frames' room may be reused
		c.writers.wake()
	}
	if c.err != nil {
		return true
	}
	if s.outstanding() && now.Sub(s.lastProgress) >= c.giveUp {
		c.fail(fmtTimeout(c))
		return true
	}
	if c.closed {
		switch {
		case now.Sub(c.closedAt) >= c.giveUp, s.una == s.tail && s.closeAcked:
			return true
		case r.eof && s.una == s.tail && s.closeSent:
			// The peer closed too and our close went out with its ack:
			// nobody is left to answer retries.
			return true
		}
	}

	// The retransmission timer.
	resendClose := false
	if !s.rtoAt.IsZero() && !now.Before(s.rtoAt) {
		switch {
		case s.una < s.nxt:
			c.st.Timeouts++
			s.timeout(now)
		case s.closeSent && !s.closeAcked:
			if s.closeSends >= closeTries {
				return true // best effort: the peer is gone or closed too
			}
			c.st.Timeouts++
			resendClose = true
			s.rto = min(2*s.rto, s.rtoCap())
			s.rtoAt = now.Add(s.rto)
		default:
			s.rtoAt = time.Time{}
		}
	}

	// The tail-loss probe: resend the last frame sent, asking for an
	// ack, whose SACK then shows what else is missing.
	if !s.tlpAt.IsZero() && !now.Before(s.tlpAt) {
		s.tlpAt = time.Time{}
		if s.una < s.nxt && !s.tlpOut {
			q := s.nxt - 1
			i := q % s.n
			b.add(kindData, q, s.length[i])
			b.frames[len(b.frames)-1].flags |= flagAckNow
			s.flags[i] |= slotRetransmitted
			s.sentAt[i] = now.Sub(c.epoch)
			s.tlpOut = true
			c.st.TailProbes++
		}
	}
	if s.fastCheck || !s.rackAt.IsZero() && !now.Before(s.rackAt) {
		c.detectLoss(now, b)
	}
	// After a timeout, resend the unSACKed frames in order; while the
	// timeout may be spurious (frtoEnd) only the first, at once and
	// asking for the acknowledgement that decides.
	for s.rtxNext < s.rtxEnd && len(b.frames) < maxBurst && (s.pipe() < s.cwnd || s.frtoEnd != 0) {
		i := s.rtxNext % s.n
		s.rtxNext++
		if s.flags[i]&slotSACKed != 0 {
			continue
		}
		b.add(kindData, s.rtxNext-1, s.length[i])
		if s.frtoEnd != 0 {
			b.frames[len(b.frames)-1].flags |= flagAckNow
		}
		s.flags[i] |= slotRetransmitted
		s.sentAt[i] = now.Sub(c.epoch)
		c.st.TimeoutRetransmits++
	}

	// New data, within the peer's window and the congestion window, up
	// to a frame a Write is still filling.
	limit := min(s.tail, s.fill)
	newFrames := 0
	for s.nxt < limit && s.nxt < s.peerRight && s.pipe() < s.cwnd && len(b.frames) < maxBurst {
		i := s.nxt % s.n
		b.add(kindData, s.nxt, s.length[i])
		s.sentAt[i] = now.Sub(c.epoch)
		c.st.BytesSent += uint64(s.length[i])
		s.nxt++
		newFrames++
	}
	if s.nxt < limit && s.nxt >= s.peerRight {
		if !s.stalled {
			s.stalled = true
			c.st.WindowStalls++
		}
	} else {
		s.stalled = false
	}
	switch held := s.nxt < limit && s.nxt < s.peerRight && s.pipe() >= s.cwnd; {
	case held && s.cwndSince.IsZero():
		s.cwndSince = now
		c.st.CwndStalls++
	case !held && !s.cwndSince.IsZero():
		c.st.CwndLimited += now.Sub(s.cwndSince)
		s.cwndSince = time.Time{}
	}
	if newFrames > 0 && s.nxt < limit && len(b.frames) < maxBurst {
		// Stopped by a window with more to send: ask for the ack that lets
		// us go on now rather than after the receiver's count or timer.
		b.frames[len(b.frames)-1].flags |= flagAckNow
	}
	dataFrames := len(b.frames)
	c.st.DataFramesSent += uint64(dataFrames)
	if dataFrames > 0 {
		if s.rtoAt.IsZero() {
			s.rtoAt = now.Add(s.rto)
		}
		s.armTLP(now)
	}

	// The close frame follows the last data frame; it needs no room in
	// the peer's window (the peer keeps only its number).
	if c.closed && s.nxt == s.tail && s.fill == noSeq && len(b.frames) < maxBurst {
		if !s.closeSent {
			s.closeSeq, s.closeSent = s.tail, true
			resendClose = true
		}
		if resendClose && !s.closeAcked {
			b.add(kindClose, s.closeSeq, 0)
			s.closeSends++
			c.st.CloseFramesSent++
			if s.rtoAt.IsZero() {
				s.rtoAt = now.Add(s.rto)
			}
		}
	}

	// A zero window with nothing in flight: probe it every RTO (backed
	// off), so that a lost window update cannot stall us.
	probe := false
	if s.nxt < s.tail && s.nxt >= s.peerRight && s.una == s.nxt {
		switch {
		case s.probeAt.IsZero():
			s.probeEvery = s.rto
			s.probeAt = now.Add(s.probeEvery)
		case !now.Before(s.probeAt):
			probe = true
			s.probeEvery = min(2*s.probeEvery, maxRTO)
			s.probeAt = now.Add(s.probeEvery)
			c.st.Probes++
		}
	} else {
		s.probeAt = time.Time{}
	}

	if len(b.frames) == 0 && (probe || r.ackDue(now)) {
		b.add(kindAck, s.nxt, 0)
		c.st.AcksSent++
	}
	if len(b.frames) == 0 {
		return false
	}
	if probe {
		b.frames[len(b.frames)-1].flags |= flagAckNow
	}
	b.ack, b.window, b.sak, b.sakShift = r.snapshot()
	s.txLow = noSeq
	for _, f := range b.frames {
		if f.kind == kindData {
			s.txLow = min(s.txLow, f.seq)
		}
	}
	return false
}

// detectLoss resends the frames the acknowledgements show lost (under
// c.mu, from plan): a frame missing while at least dupThresh later
// frames arrived, or one sent before a frame that arrived and
// unacknowledged for an RTT and a quarter since. A frame is resent at
// most once per smoothed RTT. The first such loss in a window halves
// the congestion window.
func (c *Conn) detectLoss(now time.Time, b *batch) {
	s := &c.snd
	s.fastCheck, s.rackAt = false, time.Time{}
	var above uint64
	for q := s.una; q < s.highSACK; q++ {
		if s.flags[q%s.n]&slotSACKed != 0 {
			above++
		}
	}
	t := now.Sub(c.epoch)
	wait := s.srtt + s.srtt/4
	lost := false
	for q := s.una; q < s.highSACK; q++ {
		i := q % s.n
		if s.flags[i]&slotSACKed != 0 {
			above--
			continue
		}
		age := t - s.sentAt[i]
		// The count of later frames received says a frame is lost only
		// when they were sent after it: a resent frame went out after
		// all of them, and only the time rule (frames sent after its
		// resend received) can find it lost again.
		counted := above >= dupThresh && s.flags[i]&slotRetransmitted == 0
		switch {
		case counted && age >= s.srtt, s.sentAt[i] < s.rackTime && age >= wait:
		case s.sentAt[i] < s.rackTime:
			if at := c.epoch.Add(s.sentAt[i] + wait); s.rackAt.IsZero() || at.Before(s.rackAt) {
				s.rackAt = at // lost then, unless its ack comes first
			}
			continue
		default:
			continue
		}
		if len(b.frames) == maxBurst {
			s.fastCheck = true // the rest in the next burst
			break
		}
		b.add(kindData, q, s.length[i])
		s.flags[i] |= slotRetransmitted
		s.sentAt[i] = t
		c.st.FastRetransmits++
		lost = true
	}
	if lost {
		s.lossEvent()
	}
}

// nextDeadline is when the goroutine must look again without being woken.
func (c *Conn) nextDeadline(now time.Time) time.Time {
	s, r := &c.snd, &c.rcv
	t := now.Add(time.Hour)
	for _, d := range []time.Time{s.rtoAt, r.ackAt, s.probeAt, s.tlpAt, s.rackAt} {
		if !d.IsZero() && d.Before(t) {
			t = d
		}
	}
	if s.outstanding() {
		if d := s.lastProgress.Add(c.giveUp); d.Before(t) {
			t = d
		}
	}
	if c.closed {
		if d := c.closedAt.Add(c.giveUp); d.Before(t) {
			t = d
		}
	}
	return t
}

// transmit sends a burst planned by plan, without the lock: the data
// frames' bytes are the goroutine's until plan runs again (txLow), so
// their headers are filled in place.
func (c *Conn) transmit(b *batch) {
	s := &c.snd
	h := header{session: c.cfg.Session, ack: b.ack, window: uint16(b.window), sack: b.sak, shift: b.sakShift}
	for k, f := range b.frames {
		select {
		case <-c.evict: // aborted: not one frame more
			return
		default:
		}
		h.kind, h.flags, h.seq, h.length = f.kind, f.flags, f.seq, f.length
		var buf []byte
		psum := emptySum
		if f.kind == kindData {
			i := f.seq % s.n
			base := int(i) * s.frameCap
			buf = s.slab[base : base+frameOverhead+int(f.length)]
			if c.sumSeq[i] != f.seq+1 {
				c.sumVal[i], c.sumSeq[i] = payloadSum(buf[frameOverhead:]), f.seq+1
			}
			psum = c.sumVal[i]
		} else {
			buf = c.ctl
		}
		h.put(buf[ethHeaderLen:], psum)
		if err := c.w.SendFrame(buf, k < len(b.frames)-1); err != nil {
			b.sendErrors++
		}
	}
}
