package ethstream

import "time"

// Acknowledgement policy. Under an emulator each frame the receiver
// sends costs an exit to the device model, so pure acks go out only when
// the sender needs them.
const (
	// maxAckEvery caps the in-order data frames between acks (a quarter
	// of the window is the other bound).
	maxAckEvery = 32
	// oooAckEvery: while a gap remains, every this many out-of-order
	// frames are acknowledged (the first at once), so the sender's SACK
	// view reaches its duplicate threshold and stays fresh.
	oooAckEvery = 3
	// delayedAck is how long an acknowledgement of in-order data may wait
	// for more frames to cover.
	delayedAck = time.Millisecond
)

// receiver is a Conn's receiving half, under Conn.mu.
type receiver struct {
	n       uint64   // capacity in frames: the window when nothing is held
	slots   [][]byte // payload of frame s at s%n, for s in [readSeq, readSeq+n)
	frames  [][]byte // the whole frame of each slot, handed back once read
	readSeq uint64   // the frame Read takes from next
	readOff int      // bytes of it already read
	next    uint64   // the first frame not yet received: the ack
	ooo     uint64   // frames held beyond next
	high    uint64   // one past the highest data frame received

	peerClosed bool   // the peer's close frame arrived
	peerClose  uint64 // its seq: one past the peer's last data frame
	eof        bool   // next went past the close: the stream is complete

	ackNow     bool      // an ack is due at once
	ackAt      time.Time // a delayed ack is due then (zero: none pending)
	unacked    uint64    // in-order frames since the last ack sent
	oooUnacked int       // out-of-order frames since the last ack sent
	lastWnd    uint64    // the window the last frame sent advertised
	every      uint64    // in-order frames per ack
	// sackRotate says the next acknowledgement reports the held block at
	// or after sackFrom rather than the first: every other one does, so
	// that frames held beyond the first block reach the sender too.
	sackRotate bool
	sackFrom   uint64
	discard    bool // the Conn is closed: data is acknowledged and dropped

	recycle func(frame []byte) // hands a frame Read is done with back to the Wire
}

func (r *receiver) init(frames int) {
	r.n = uint64(frames)
	r.slots = make([][]byte, frames)
	r.frames = make([][]byte, frames)
	r.recycle = func([]byte) {}
	r.every = max(1, min(maxAckEvery, r.n/4))
	r.lastWnd = r.n
}

// dataEnd is one past the last data frame Read may take now.
func (r *receiver) dataEnd() uint64 {
	if r.eof {
		return r.peerClose
	}
	return r.next
}

// readable reports whether Read has bytes to take.
func (r *receiver) readable() bool { return r.readSeq < r.dataEnd() }

// window is how many frames beyond next the receiver takes: the buffer's
// frames not holding unread data. Its right edge, readSeq+n, never moves
// back.
func (r *receiver) window() uint64 {
	used := r.next - r.readSeq
	if used >= r.n {
		return 0
	}
	return min(r.n-used, maxWindow)
}

// sack is the SACK bitmap and its shift: bit i set when frame
// next+1+sackBlock*shift+i is held. Every other acknowledgement reports
// the block of the first frame held beyond next, so that a hole wider
// than the bitmap (a burst the receiving NIC or its queue dropped) still
// shows the sender frames received beyond it, and with them that the
// hole is lost; the others report, in turn, the blocks held further on,
// which the sender would otherwise resend after a timeout.
func (r *receiver) sack() (sack uint64, shift uint8) {
	if r.ooo == 0 {
		return 0, 0
	}
	lim := min(r.readSeq+r.n, r.next+1+sackBlock*256)
	first := r.firstHeld(r.next+1, lim)
	if first == noSeq {
		return 0, 0
	}
	k := (first - r.next - 1) / sackBlock
	rotate := r.sackRotate
	r.sackRotate = !rotate
	if rotate {
		// The next block held past the first and the last reported; when
		// none is, the first again, and the next turn starts over.
		r.sackFrom = max(r.sackFrom, r.next+1+sackBlock*(k+1))
		if further := r.firstHeld(r.sackFrom, lim); further != noSeq {
			k = (further - r.next - 1) / sackBlock
			r.sackFrom = r.next + 1 + sackBlock*(k+1)
		} else {
			r.sackFrom = 0
		}
	}
	base := r.next + 1 + sackBlock*k
	for i := uint64(0); i < sackBlock && base+i < lim; i++ {
		if r.slots[(base+i)%r.n] != nil {
			sack |= 1 << i
		}
	}
	return sack, uint8(k)
}

// firstHeld is the first frame in [from, lim) held beyond next, or noSeq.
func (r *receiver) firstHeld(from, lim uint64) uint64 {
	for q := from; q < lim; q++ {
		if r.slots[q%r.n] != nil {
			return q
		}
	}
	return noSeq
}

// snapshot returns the acknowledgement fields of a frame about to be
// sent and notes that they were: no ack is owed any more.
func (r *receiver) snapshot() (ack, window, sack uint64, shift uint8) {
	ack, window = r.next, r.window()
	sack, shift = r.sack()
	r.ackNow, r.ackAt = false, time.Time{}
	r.unacked, r.oooUnacked = 0, 0
	r.lastWnd = window
	return ack, window, sack, shift
}

// ackDue reports whether a pure ack should go out now.
func (r *receiver) ackDue(now time.Time) bool {
	return r.ackNow || !r.ackAt.IsZero() && !now.Before(r.ackAt)
}

// take returns the payloads Read copies next, up to max bytes (the first
// past what was read of it). They stay in their slots until consume.
func (r *receiver) take(bufs [][]byte, max int) [][]byte {
	end, off, got := r.dataEnd(), r.readOff, 0
	for s := r.readSeq; s < end && got < max; s++ {
		b := r.slots[s%r.n][off:]
		off = 0
		bufs = append(bufs, b)
		got += len(b)
	}
	return bufs
}

// consume drops n bytes Read copied and reports whether the window
// opened enough to tell the sender at once: from below a quarter of
// the buffer, as it last heard, to above a half.
func (r *receiver) consume(n int) (update bool) {
	for n > 0 && r.readSeq < r.dataEnd() {
		i := r.readSeq % r.n
		rest := len(r.slots[i]) - r.readOff
		if n < rest {
			r.readOff += n
			break
		}
		n -= rest
		// Read has copied all of it: the frame goes back to the Wire.
		r.recycle(r.frames[i])
		r.slots[i], r.frames[i] = nil, nil
		r.readSeq++
		r.readOff = 0
	}
	if r.lastWnd < r.n/4 && r.window() >= r.n/2 && !r.ackNow {
		r.ackNow = true
		return true
	}
	return false
}

// discardBuffered drops unread data (the Conn was closed) and makes
// later data be acknowledged and dropped as it arrives in order.
func (r *receiver) discardBuffered() {
	r.discard = true
	r.dropInOrder()
}

func (r *receiver) dropInOrder() {
	// Dropped, not handed back: a Read may still be copying from them
	// (Close discards what it has not consumed yet).
	for end := r.dataEnd(); r.readSeq < end; r.readSeq++ {
		r.slots[r.readSeq%r.n], r.frames[r.readSeq%r.n] = nil, nil
	}
	r.readOff = 0
}

// onData takes a data frame (under c.mu) and reports whether the
// goroutine must be woken (to send an ack).
func (c *Conn) onData(h *header, frame, payload []byte, clk *clock) (kick, kept bool) {
	r := &c.rcv
	c.st.DataFramesReceived++
	s := h.seq
	switch {
	case len(payload) == 0, r.peerClosed && s >= r.peerClose:
		c.st.BadFrames++
		return false, false
	case s < r.next:
		// Received before: the sender probably missed our ack.
		c.st.DuplicateFrames++
		r.ackNow = true
		return true, false
	case s >= r.readSeq+r.n:
		// Beyond the window: no sender of ours does that; our window may
		// be news to it.
		c.st.BadFrames++
		r.ackNow = true
		return true, false
	}
	i := s % r.n
	if r.slots[i] != nil {
		c.st.DuplicateFrames++
		r.ackNow = true
		return true, false
	}
	r.slots[i], r.frames[i] = payload, frame
	r.high = max(r.high, s+1)
	if s != r.next {
		c.st.OutOfOrder++
		r.ooo++
		r.oooUnacked++
		if r.ooo == 1 || r.oooUnacked >= oooAckEvery {
			r.ackNow = true // a gap: the sender needs the SACK
			return true, true
		}
		return false, true
	}
	// In order: take it and whatever it joins up with.
	lim := r.readSeq + r.n
	adv := uint64(0)
	for r.next < lim && r.slots[r.next%r.n] != nil {
		c.st.BytesReceived += uint64(len(r.slots[r.next%r.n]))
		r.next++
		adv++
	}
	r.ooo -= adv - 1
	r.unacked += adv
	if r.peerClosed && r.next == r.peerClose {
		c.reachEOF()
	}
	if r.discard {
		r.dropInOrder()
	} else {
		c.readers.wake()
	}
	switch {
	case r.ackNow:
	case adv > 1:
		// It filled a gap: the sender, which saw the gap, learns at once
		// that what it might resend arrived (RFC 5681 section 4.2).
		r.ackNow = true
	case r.unacked >= r.every:
		r.ackNow = true
	case r.ackAt.IsZero():
		r.ackAt = clk.now().Add(delayedAck)
	default:
		return false, true // the delayed ack is already armed
	}
	return true, true
}

// onClose takes the peer's close frame (under c.mu).
func (c *Conn) onClose(h *header) (kick bool) {
	r := &c.rcv
	if r.peerClosed {
		if h.seq != r.peerClose {
			c.st.BadFrames++
			return false
		}
		c.st.DuplicateFrames++
		r.ackNow = true
		return true
	}
	if h.seq < r.high {
		c.st.BadFrames++ // data beyond the end
		return false
	}
	r.peerClosed, r.peerClose = true, h.seq
	if r.next == h.seq {
		c.reachEOF()
	}
	// Nobody reads our data at the peer any more: stop sending it and
	// fail Write.
	c.snd.abandon()
	c.writers.wake()
	r.ackNow = true
	return true
}

// reachEOF: every frame up to the peer's close arrived; the ack covers
// the close too.
func (c *Conn) reachEOF() {
	c.rcv.next++
	c.rcv.eof = true
	c.rcv.ackNow = true
	c.readers.wake()
}
