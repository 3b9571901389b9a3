// Package linktest is an in-memory Ethernet wire for host tests of the
// network stack: Pair returns two nic.NIC ends joined by a wire that can
// limit its rate and lose, reorder or duplicate frames on purpose. It
// follows the nic.NIC contract (a bounded transmit ring refusing with
// nic.ErrQueueFull, TxReady, counters), so the stack meets the same
// back-pressure as over a real driver.
package linktest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/doppel-ft/doppel/nic"
)

// Faults are what the wire does to frames, each direction on its own.
type Faults struct {
	// Loss is the probability a frame is dropped.
	Loss float64
	// BurstLoss is the probability a frame starts a run of BurstLen
	// dropped frames (it among them), as a receiver's overflowing queue
	// drops: a hole wider than a loss at a time makes. Like the queue's
	// overflow the run ends when the wire has been idle for burstIdle
	// (so it cannot also swallow the resends a timeout sends later).
	BurstLoss float64
	BurstLen  int
	// Reorder is the probability a frame is held back and delivered
	// after the next one (or reorderHold later if none follows).
	Reorder float64
	// Duplicate is the probability a frame is delivered twice.
	Duplicate float64
	// Corrupt is the probability a frame longer than the Ethernet, IPv4
	// and TCP headers has a bit of its last byte flipped (a payload or
	// option byte: the transport checksum no longer holds).
	Corrupt float64
	// Seed makes the fault sequence reproducible.
	Seed uint64
}

// burstIdle ends a burst loss: shorter than the shortest retransmission
// timeout a sender may use (10 ms), longer than the gaps between one
// burst's frames on a loaded host (a wire goroutine under -race).
const burstIdle = 5 * time.Millisecond

// reorderHold is the longest a reordered frame waits for a later one to
// overtake it.
const reorderHold = 2 * time.Millisecond

// maxBurst is how far ahead of its pace an idle paced wire may run: the
// credit an idle wire earns is capped at this much time, so a wire idle
// for seconds does not then deliver megabytes at the CPU's speed (as a
// real link cannot).
const maxBurst = time.Millisecond

// Config describes the wire.
type Config struct {
	MTU int // default 1500
	// Ring is the transmit ring size in frames (default 256).
	Ring int
	// RxQueue is each end's receive queue in frames (default 1024); a full
	// queue drops and counts RxDropped, as a NIC does.
	RxQueue int
	// BytesPerSec limits each direction's rate (0: as fast as the CPU).
	BytesPerSec float64
	Faults      Faults
	// Names are the ends' interface names (default mem-0, mem-1).
	Names [2]string
	// Segment makes the ends nic.Segmenters: they cut TCP segments of up
	// to 64 KiB into frames as a NIC with TCP segmentation offload does.
	Segment bool
}

// Pair returns the two ends of a new wire. Closing either end closes it.
func Pair(cfg Config) (a, b *End) {
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Ring == 0 {
		cfg.Ring = 256
	}
	if cfg.RxQueue == 0 {
		cfg.RxQueue = 1024
	}
	if cfg.Names[0] == "" {
		cfg.Names = [2]string{"mem-0", "mem-1"}
	}
	a = newEnd(cfg.Names[0], nic.MAC{0x02, 0, 0, 0, 0, 1}, cfg)
	b = newEnd(cfg.Names[1], nic.MAC{0x02, 0, 0, 0, 0, 2}, cfg)
	a.peer, b.peer = b, a
	a.rng = rand.New(rand.NewPCG(cfg.Faults.Seed, 1))
	b.rng = rand.New(rand.NewPCG(cfg.Faults.Seed, 2))
	go a.wire()
	go b.wire()
	return a, b
}

// End is one end of the wire: a nic.NIC.
type End struct {
	name string
	mac  nic.MAC
	cfg  Config
	peer *End

	tx      chan []byte // the transmit ring
	txMu    sync.Mutex  // held and the ring's room
	held    [][]byte    // frames sent with more, waiting for the doorbell
	rx      chan []byte
	txReady chan struct{}
	closed  chan struct{}
	once    sync.Once
	rng     *rand.Rand // used only by this end's wire goroutine
	down    atomic.Bool

	txFrames, txBytes, rxFrames, rxBytes atomic.Uint64
	txFull, rxDropped                    atomic.Uint64
	lost, reordered, duplicated          atomic.Uint64
	corrupted                            atomic.Uint64
	segments                             atomic.Uint64

	// Received frames handed back (Recycle) wait in free for the peer's
	// next copies; freeSet finds a frame handed back twice.
	recMu                    sync.Mutex
	free                     [][]byte
	freeSet                  map[*byte]bool
	recycled, doubleRecycled atomic.Uint64
}

var _ nic.Recycler = (*End)(nil)

// maxFree bounds the frames an end keeps for reuse.
const maxFree = 4096

// Recycle implements nic.Recycler. The frame's bytes are overwritten at
// once with 0xA5, so a receiver that still reads them after handing them
// back sees garbage (as it would once a driver reused the buffer), and
// the buffer takes one of the peer's later frames. Handing a frame back
// twice is counted (DoubleRecycled), not trusted.
func (e *End) Recycle(frame []byte) {
	b := frame[:cap(frame)]
	if len(b) == 0 {
		return
	}
	for i := range b {
		b[i] = 0xa5
	}
	e.recycled.Add(1)
	e.recMu.Lock()
	defer e.recMu.Unlock()
	if e.freeSet == nil {
		e.freeSet = map[*byte]bool{}
	}
	switch {
	case e.freeSet[&b[0]]:
		e.doubleRecycled.Add(1)
	case len(e.free) < maxFree:
		e.free = append(e.free, b[:0])
		e.freeSet[&b[0]] = true
	}
}

// Recycled reports how many received frames were handed back, and how
// many of those hand-backs were of a frame already handed back.
func (e *End) Recycled() (n, twice uint64) { return e.recycled.Load(), e.doubleRecycled.Load() }

// copyFrame copies a frame on its way to this end, into a buffer this end
// handed back if one is free.
func (e *End) copyFrame(frame []byte) []byte {
	e.recMu.Lock()
	var b []byte
	if k := len(e.free); k > 0 && cap(e.free[k-1]) >= len(frame) {
		b = e.free[k-1]
		e.free = e.free[:k-1]
		delete(e.freeSet, &b[:1][0])
	}
	e.recMu.Unlock()
	return append(b, frame...)
}

var _ nic.NIC = (*End)(nil)

func newEnd(name string, mac nic.MAC, cfg Config) *End {
	return &End{name: name, mac: mac, cfg: cfg,
		tx: make(chan []byte, cfg.Ring), rx: make(chan []byte, cfg.RxQueue),
		txReady: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (e *End) Name() string             { return e.name }
func (e *End) MAC() nic.MAC             { return e.mac }
func (e *End) MTU() int                 { return e.cfg.MTU }
func (e *End) LinkUp() bool             { return !e.down.Load() && !e.isClosed() }
func (e *End) TxReady() <-chan struct{} { return e.txReady }

// SetLinkDown cuts (true) or restores the wire from this end: frames sent
// while it is down are refused with nic.ErrLinkDown.
func (e *End) SetLinkDown(down bool) { e.down.Store(down) }

func (e *End) isClosed() bool {
	select {
	case <-e.closed:
		return true
	default:
		return false
	}
}

// Transmit queues a copy of frame on the ring.
func (e *End) Transmit(frame []byte) error { return e.TransmitMore(frame, false) }

var _ nic.Batcher = (*End)(nil)

// TransmitMore implements nic.Batcher: a frame sent with more holds its
// slot of the ring but reaches the wire only with the burst's last frame
// (or the first that fails), as descriptors wait for a NIC's doorbell.
func (e *End) TransmitMore(frame []byte, more bool) (err error) {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	defer func() {
		if !more || err != nil {
			for _, f := range e.held {
				e.tx <- f // room was checked when it was held
			}
			e.held = e.held[:0]
		}
	}()
	if e.isClosed() {
		return nic.ErrClosed
	}
	if e.down.Load() {
		return nic.ErrLinkDown
	}
	if len(frame) < 14 || len(frame) > e.cfg.MTU+14 {
		return nic.ErrFrameSize
	}
	if len(e.tx)+len(e.held) >= cap(e.tx) {
		e.txFull.Add(1)
		return nic.ErrQueueFull
	}
	e.held = append(e.held, e.peer.copyFrame(frame))
	e.txFrames.Add(1)
	e.txBytes.Add(uint64(len(frame)))
	return nil
}

// maxSegment is the longest packet TransmitSegment takes.
const maxSegment = 14 + 65535

// MaxSegment implements nic.Segmenter when Config.Segment is set.
func (e *End) MaxSegment() int {
	if !e.cfg.Segment {
		return 0
	}
	return maxSegment
}

// TransmitSegment implements nic.Segmenter when Config.Segment is set:
// the packet's TCP payload is cut into frames of mss bytes, each with the
// packet's headers, its IP total length, ID (advanced by one per frame)
// and TCP sequence number adjusted, FIN and PSH on the last frame only,
// and both checksums computed, as a NIC does it; the frames take their
// slots on the ring together, or none does.
func (e *End) TransmitSegment(packet []byte, mss int) error {
	if !e.cfg.Segment {
		return fmt.Errorf("linktest: %s does not segment: %w", e.name, nic.ErrFrameSize)
	}
	if len(packet) < 14+header.IPv4MinimumSize || header.Ethernet(packet).Type() != header.IPv4ProtocolNumber {
		return fmt.Errorf("linktest: not an IPv4 packet: %w", nic.ErrFrameSize)
	}
	ip := header.IPv4(packet[14:])
	if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.TCPProtocolNumber || len(packet) > maxSegment {
		return fmt.Errorf("linktest: not a TCP segment over IPv4 of at most 64 KiB: %w", nic.ErrFrameSize)
	}
	ihl := int(ip.HeaderLength())
	tcp := header.TCP(ip[ihl:])
	if len(tcp) < header.TCPMinimumSize || int(tcp.DataOffset()) < header.TCPMinimumSize || len(tcp) < int(tcp.DataOffset()) {
		return fmt.Errorf("linktest: bad TCP header: %w", nic.ErrFrameSize)
	}
	hdr := 14 + ihl + int(tcp.DataOffset())
	if mss < 1 || hdr-14+mss > e.cfg.MTU {
		return fmt.Errorf("linktest: MSS %d with %d bytes of headers over MTU %d: %w", mss, hdr-14, e.cfg.MTU, nic.ErrFrameSize)
	}
	var frames [][]byte
	for off := hdr; off < len(packet); off += mss {
		end := min(off+mss, len(packet))
		f := append(append(make([]byte, 0, hdr+end-off), packet[:hdr]...), packet[off:end]...)
		fip := header.IPv4(f[14:])
		fip.SetTotalLength(uint16(len(f) - 14))
		fip.SetID(ip.ID() + uint16(len(frames)))
		fip.SetChecksum(0)
		fip.SetChecksum(^fip.CalculateChecksum())
		ft := header.TCP(f[14+ihl:])
		ft.SetSequenceNumber(tcp.SequenceNumber() + uint32(off-hdr))
		if end < len(packet) {
			ft.SetFlags(uint8(tcp.Flags() &^ (header.TCPFlagFin | header.TCPFlagPsh)))
		}
		ft.SetChecksum(0)
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, fip.SourceAddress(), fip.DestinationAddress(), uint16(len(ft)))
		ft.SetChecksum(^checksum.Checksum(ft, xsum))
		frames = append(frames, f)
	}
	e.txMu.Lock()
	defer e.txMu.Unlock()
	if e.isClosed() {
		return nic.ErrClosed
	}
	if e.down.Load() {
		return nic.ErrLinkDown
	}
	for _, f := range e.held { // frames sent with more go first
		e.tx <- f
	}
	e.held = e.held[:0]
	if len(e.tx)+len(frames) > cap(e.tx) {
		e.txFull.Add(1)
		return nic.ErrQueueFull
	}
	for _, f := range frames {
		e.tx <- f
		e.txFrames.Add(1)
		e.txBytes.Add(uint64(len(f)))
	}
	e.segments.Add(1)
	return nil
}

// Segments reports how many packets TransmitSegment took.
func (e *End) Segments() uint64 { return e.segments.Load() }

// Receive returns the next frame.
func (e *End) Receive(ctx context.Context) ([]byte, error) {
	select {
	case f := <-e.rx:
		e.rxFrames.Add(1)
		e.rxBytes.Add(uint64(len(f)))
		return f, nil
	case <-e.closed:
		return nil, nic.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Counters are the end's statistics.
func (e *End) Counters() nic.Counters {
	return nic.Counters{TxFrames: e.txFrames.Load(), TxBytes: e.txBytes.Load(),
		RxFrames: e.rxFrames.Load(), RxBytes: e.rxBytes.Load(),
		TxQueueFull: e.txFull.Load(), RxDropped: e.rxDropped.Load()}
}

// Faulted reports how many frames this end's wire direction lost,
// reordered and duplicated on purpose.
func (e *End) Faulted() (lost, reordered, duplicated uint64) {
	return e.lost.Load(), e.reordered.Load(), e.duplicated.Load()
}

// Corrupted is how many frames this end's wire corrupted (Faults.Corrupt).
func (e *End) Corrupted() uint64 { return e.corrupted.Load() }

// Close closes both ends.
func (e *End) Close() error {
	e.closeOne()
	e.peer.closeOne()
	return nil
}

func (e *End) closeOne() { e.once.Do(func() { close(e.closed) }) }

// wire moves frames from e's ring to the peer's receive queue, pacing
// and faulting them.
func (e *End) wire() {
	f := e.cfg.Faults
	var held []byte
	burst := 0 // frames of a burst loss still to drop
	var last time.Time
	start, sent := time.Now(), 0.0
	for {
		var frame []byte
		var late <-chan time.Time // a held frame goes out late at the latest
		if held != nil {
			late = time.After(reorderHold)
		}
		select {
		case frame = <-e.tx:
		case <-late:
			e.deliver(held)
			held = nil
			continue
		case <-e.closed:
			return
		}
		select { // the ring has room again
		case e.txReady <- struct{}{}:
		default:
		}
		if e.cfg.BytesPerSec > 0 {
			if idle := time.Since(start) - time.Duration(sent/e.cfg.BytesPerSec*1e9); idle > maxBurst {
				start = start.Add(idle - maxBurst)
			}
			sent += float64(len(frame))
			if d := time.Duration(sent/e.cfg.BytesPerSec*1e9) - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
		now := time.Now()
		if now.Sub(last) > burstIdle {
			burst = 0
		} else if burst == 0 && f.BurstLoss > 0 && e.rng.Float64() < f.BurstLoss {
			burst = f.BurstLen
		}
		last = now
		switch {
		case burst > 0:
			burst--
			e.lost.Add(1)
			continue
		case f.Loss > 0 && e.rng.Float64() < f.Loss:
			e.lost.Add(1)
			continue
		case f.Corrupt > 0 && len(frame) > 14+20+20 && e.rng.Float64() < f.Corrupt:
			e.corrupted.Add(1)
			frame[len(frame)-1] ^= 1 << e.rng.IntN(8)
		}
		switch {
		case held == nil && f.Reorder > 0 && e.rng.Float64() < f.Reorder:
			e.reordered.Add(1)
			held = frame
			continue
		}
		// The duplicate is copied first: once delivered, the frame is
		// the receiver's, which may hand it back (Recycle) at once.
		var dup []byte
		if f.Duplicate > 0 && e.rng.Float64() < f.Duplicate {
			e.duplicated.Add(1)
			dup = append([]byte(nil), frame...)
		}
		e.deliver(frame)
		if dup != nil {
			e.deliver(dup)
		}
		if held != nil {
			e.deliver(held)
			held = nil
		}
	}
}

func (e *End) deliver(frame []byte) {
	select {
	case e.peer.rx <- frame:
	default:
		e.peer.rxDropped.Add(1)
	}
}
