package qemutest

import (
	"bufio"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relay joins two QEMU `-netdev socket,connect=` back ends (each frame is
// a 4-byte big-endian length and the frame) and can lose and reorder
// frames on the way, as a faulty wire would, or carry them at a line
// rate, as a real one does.
type relay struct {
	loss, reorder float64
	// rate, if not zero, is the wire's line rate in bytes a second in each
	// direction (see pacer).
	rate                    float64
	frames, lost, reordered atomic.Uint64
	ln                      [2]net.Listener
	// inject[i] takes extra frames (without the length prefix) to write
	// into the stream toward side i between forwarded frames.
	inject [2]chan []byte
	// corrupt[i] is how many more TCP segments with payload on their way
	// to side i get a corrupted copy (one payload byte changed, the
	// checksum left as it was) sent just before them.
	corrupt   [2]atomic.Int64
	corrupted atomic.Uint64
}

// newRelay listens on two loopback ports; side i's QEMU connects to
// Port(i).
func newRelay(t *testing.T, loss, reorder float64, seed uint64) *relay {
	return startRelay(t, &relay{loss: loss, reorder: reorder}, seed)
}

// newPacedRelay is a fault-free relay whose wire carries rate bytes a
// second each way.
func newPacedRelay(t *testing.T, rate float64) *relay {
	return startRelay(t, &relay{rate: rate}, 1)
}

func startRelay(t *testing.T, r *relay, seed uint64) *relay {
	r.inject = [2]chan []byte{make(chan []byte, 64), make(chan []byte, 64)}
	for i := range r.ln {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.ln[i] = l
		t.Cleanup(func() { l.Close() })
	}
	go r.run(seed)
	return r
}

func (r *relay) Port(i int) int { return r.ln[i].Addr().(*net.TCPAddr).Port }

func (r *relay) run(seed uint64) {
	var c [2]net.Conn
	var wg sync.WaitGroup
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c[i], _ = r.ln[i].Accept()
		}()
	}
	wg.Wait()
	if c[0] == nil || c[1] == nil {
		return
	}
	go r.pipe(c[0], c[1], 1, rand.New(rand.NewPCG(seed, 1)))
	go r.pipe(c[1], c[0], 0, rand.New(rand.NewPCG(seed, 2)))
}

// wireOverhead is what an Ethernet wire spends on a frame beyond the bytes
// QEMU hands over: the FCS (4), the preamble and start delimiter (8) and
// the minimum gap between frames (12).
const wireOverhead = 4 + 8 + 12

// pacerBurst is how far a pacer may fall behind its schedule and catch up
// at full speed. Without the slack every oversleep would be wire time lost
// for good, and Go's sleeps on Linux wait a whole millisecond or more
// (the poller's timeout is in milliseconds): with 1 ms of slack the raw
// probe filled 91 % of a 200 Mb/s wire. The receiving QEMU holds a burst
// in its queue while the ring is full, so the slack loses no frame.
const pacerBurst = 4 * time.Millisecond

// pacer holds frames to a line rate. Without one the relay's wire has no
// speed of its own: the raw probe then measures how fast the receiving
// emulated CPU takes frames in, and any work a protocol does per byte
// shows as wire lost. A paced relay stops reading while it waits, so the
// sending QEMU's socket fills and its queue holds the frames, as a NIC's
// transmit ring does on a real link.
type pacer struct {
	rate  float64   // bytes a second, 0 for none
	due   time.Time // when the wire is free for the next frame
	now   func() time.Time
	sleep func(time.Duration)
}

func newPacer(rate float64) *pacer {
	return &pacer{rate: rate, now: time.Now, sleep: time.Sleep}
}

// wait returns once the wire has time for a frame of n bytes (without the
// relay's length prefix), calling flush first if it must sleep.
func (p *pacer) wait(n int, flush func() error) error {
	if p.rate == 0 {
		return nil
	}
	now := p.now()
	if d := p.due.Sub(now); d > 0 {
		if err := flush(); err != nil {
			return err
		}
		p.sleep(d)
		now = p.now()
	}
	if p.due.Before(now.Add(-pacerBurst)) {
		p.due = now.Add(-pacerBurst)
	}
	p.due = p.due.Add(time.Duration(float64(n+wireOverhead) / p.rate * float64(time.Second)))
	return nil
}

// Inject queues frames to be written toward side i (blocking while 64
// are queued).
func (r *relay) Inject(i int, frames ...[]byte) {
	for _, f := range frames {
		r.inject[i] <- f
	}
}

// tcpPayload returns the offset of the TCP payload in a relayed frame
// (4-byte length, Ethernet, IPv4, TCP), or 0 if it has none.
func tcpPayload(f []byte) int {
	const eth = 4 + 14
	if len(f) < eth+20 || binary.BigEndian.Uint16(f[4+12:]) != 0x0800 || f[eth+9] != 6 {
		return 0
	}
	ihl := int(f[eth]&0xf) * 4
	total := int(binary.BigEndian.Uint16(f[eth+2:]))
	if len(f) < eth+ihl+20 || total > len(f)-eth {
		return 0
	}
	doff := int(f[eth+ihl+12]>>4) * 4
	if off := eth + ihl + doff; off < eth+total {
		return off
	}
	return 0
}

// pipe forwards frames from src to dst (side to); a reordered frame is
// held until the next one has gone (or 2 ms have passed). Both ends are
// buffered, and what is written goes out once no frame waits: a system
// call or three a frame cost the host a third of a core at the QEMU
// pair's 50,000 frames a second, taken from the machines it measures.
func (r *relay) pipe(src, dst net.Conn, to int, rng *rand.Rand) {
	defer dst.Close()
	frames := make(chan []byte, 64)
	go func() {
		defer close(frames)
		br := bufio.NewReaderSize(src, 256<<10)
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			f := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
			copy(f, hdr[:])
			if _, err := io.ReadFull(br, f[4:]); err != nil {
				return
			}
			frames <- f
		}
	}()
	bw := bufio.NewWriterSize(dst, 256<<10)
	pace := newPacer(r.rate)
	// write sends one frame (with its length prefix) when the wire is free.
	write := func(f []byte) error {
		if err := pace.wait(len(f)-4, bw.Flush); err != nil {
			return err
		}
		_, err := bw.Write(f)
		return err
	}
	var held []byte
	for {
		if len(frames) == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		var late <-chan time.Time
		if held != nil {
			late = time.After(2 * time.Millisecond)
		}
		select {
		case f, ok := <-frames:
			if !ok {
				return
			}
			r.frames.Add(1)
			switch {
			case rng.Float64() < r.loss:
				r.lost.Add(1)
				continue
			case held == nil && rng.Float64() < r.reorder:
				r.reordered.Add(1)
				held = f
				continue
			}
			if off := tcpPayload(f); off > 0 && r.corrupt[to].Load() > 0 {
				r.corrupt[to].Add(-1)
				bad := append([]byte(nil), f...)
				bad[off] ^= 0x5a
				r.corrupted.Add(1)
				if err := write(bad); err != nil {
					return
				}
			}
			if err := write(f); err != nil {
				return
			}
			if held != nil {
				write(held)
				held = nil
			}
		case <-late:
			write(held)
			held = nil
		case f := <-r.inject[to]:
			b := binary.BigEndian.AppendUint32(nil, uint32(len(f)))
			if err := write(append(b, f...)); err != nil {
				return
			}
		}
	}
}
