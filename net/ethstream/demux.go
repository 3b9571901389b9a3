package ethstream

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Wire sends the streams' frames; the link endpoint implements it.
type Wire interface {
	// SendFrame transmits one whole Ethernet frame (14-byte header
	// included, no FCS). more says another frame follows at once (the
	// NIC may defer its doorbell until a call with more=false; the stream
	// always ends a burst with more=false). It may block briefly for ring
	// space; an error means the frame was not sent (the stream treats it
	// as lost and retransmits it later). The callee copies frame before
	// returning.
	SendFrame(frame []byte, more bool) error
	// MTU is the largest payload after the Ethernet header (1500 for
	// standard frames, up to 16000).
	MTU() int
}

// Recycler is a Wire that takes received frames back once the stream is
// done with them (Read has copied a data frame's payload out, or the
// frame was dropped), for its NIC to receive into again instead of
// allocating (nic.Recycler).
type Recycler interface {
	Recycle(frame []byte)
}

// Demux routes received stream frames to Conns by session.
type Demux struct {
	w       Wire
	recycle func(frame []byte) // the Wire's Recycle, or a no-op

	mu    sync.Mutex                       // serializes changes to conns
	conns atomic.Pointer[map[uint32]*Conn] // copied on change: Deliver reads it without a lock

	frames, unknown, malformed, badSum, wrongDst, wrongSrc atomic.Uint64
}

// DemuxStats are a Demux's counters of received frames.
type DemuxStats struct {
	// Frames counts frames handed to a Conn.
	Frames uint64
	// UnknownSession counts intact frames of a session no Conn has open
	// (a peer still sending after its Conn here was closed, or one that
	// opened first).
	UnknownSession uint64
	// Malformed counts frames too short for the header, of another
	// EtherType, of an unknown version or kind, or whose payload length
	// runs past the frame's end.
	Malformed uint64
	// BadSum counts frames whose checksum does not match: corrupted.
	BadSum uint64
	// WrongDestination counts frames of an open session not addressed to
	// its Conn's Local MAC, and WrongSource those not from its Peer.
	WrongDestination, WrongSource uint64
}

// NewDemux returns a Demux sending through w. It starts no goroutine:
// each Conn it opens has its own.
func NewDemux(w Wire) *Demux {
	d := &Demux{w: w, recycle: func([]byte) {}}
	if r, ok := w.(Recycler); ok {
		d.recycle = r.Recycle
	}
	d.conns.Store(&map[uint32]*Conn{})
	return d
}

// Deliver takes one received Ethernet frame of EtherType (header
// included) from the link's receive goroutine. The frame becomes the
// Demux's: the payload of a data frame is kept, not copied, until Read
// takes it, and then (or at once, for a frame not kept) the frame goes
// back to the Wire if it is a Recycler. Deliver never blocks on the
// wire: it updates the Conn's state under its lock and wakes the Conn's
// goroutine to send what is due.
func (d *Demux) Deliver(frame []byte) {
	if !d.route(frame) {
		d.recycle(frame)
	}
}

// route hands frame to its Conn, or counts why not, and reports whether
// the Conn kept it.
func (d *Demux) route(frame []byte) (kept bool) {
	h, payload, why := parse(frame)
	switch why {
	case parseMalformed:
		d.malformed.Add(1)
		return false
	case parseBadSum:
		d.badSum.Add(1)
		return false
	}
	c := (*d.conns.Load())[h.session]
	switch {
	case c == nil:
		d.unknown.Add(1)
		return false
	case [6]byte(frame[0:6]) != c.cfg.Local:
		d.wrongDst.Add(1)
		return false
	case [6]byte(frame[6:12]) != c.cfg.Peer:
		d.wrongSrc.Add(1)
		return false
	}
	d.frames.Add(1)
	return c.deliver(&h, frame, payload)
}

// Open registers a Conn for cfg.Session and starts its goroutine. It
// fails for a bad Config, a Wire whose MTU cannot carry the header, or a
// session already open. A session whose Conn was closed but is still
// delivering its last data in the background is free: Open stops that
// Conn at once and takes the session.
func (d *Demux) Open(cfg Config) (*Conn, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	mtu := d.w.MTU()
	if mtu < minMTU || mtu > maxMTU {
		return nil, fmt.Errorf("ethstream: wire MTU %d outside [%d, %d]: %w", mtu, minMTU, maxMTU, ErrConfig)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.conns.Load()
	if prev := old[cfg.Session]; prev != nil {
		if !prev.evictable() {
			return nil, fmt.Errorf("ethstream: session %#x: %w", cfg.Session, ErrSessionInUse)
		}
		prev.evictNow()
	}
	c := newConn(d, cfg, mtu)
	m := make(map[uint32]*Conn, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[cfg.Session] = c
	d.conns.Store(&m)
	go c.run()
	return c, nil
}

// unregister removes c from the sessions if it is still the one open
// for its session (Open may have replaced it).
func (d *Demux) unregister(c *Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.conns.Load()
	if old[c.cfg.Session] != c {
		return
	}
	m := make(map[uint32]*Conn, len(old))
	for k, v := range old {
		if v != c {
			m[k] = v
		}
	}
	d.conns.Store(&m)
}

// Stats returns the Demux's counters.
func (d *Demux) Stats() DemuxStats {
	return DemuxStats{Frames: d.frames.Load(), UnknownSession: d.unknown.Load(), Malformed: d.malformed.Load(),
		BadSum: d.badSum.Load(), WrongDestination: d.wrongDst.Load(), WrongSource: d.wrongSrc.Load()}
}
