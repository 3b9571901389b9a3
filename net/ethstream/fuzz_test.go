package ethstream

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// discardWire is a Wire that sends nowhere.
type discardWire struct{}

func (discardWire) MTU() int                         { return 1500 }
func (discardWire) SendFrame(f []byte, m bool) error { return nil }

// fuzzConfig keeps the fuzz test's Conns small (their buffers are
// allocated at Open).
var fuzzConfig = Config{Local: macL, Peer: macP, Session: testSession, SendBuffer: 64 << 10, ReceiveBuffer: 64 << 10}

// checkInvariants fails the test if c's state is inconsistent.
func checkInvariants(t *testing.T, c *Conn) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	r, s := &c.rcv, &c.snd
	if r.readSeq > r.next || r.next > r.readSeq+r.n+1 || r.readSeq > r.dataEnd() {
		t.Fatalf("receiver: readSeq %d next %d n %d dataEnd %d", r.readSeq, r.next, r.n, r.dataEnd())
	}
	var held uint64
	for q := r.next + 1; q < r.readSeq+r.n; q++ {
		if r.slots[q%r.n] != nil {
			held++
		}
	}
	if held != r.ooo {
		t.Fatalf("receiver: %d frames held beyond next, ooo says %d", held, r.ooo)
	}
	if r.window() > r.n {
		t.Fatalf("receiver: window %d of %d", r.window(), r.n)
	}
	if s.una > s.nxt || s.nxt > s.tail || s.tail-s.una > s.n {
		t.Fatalf("sender: una %d nxt %d tail %d n %d", s.una, s.nxt, s.tail, s.n)
	}
	if s.cwnd < minCwnd {
		t.Fatalf("sender: cwnd %d", s.cwnd)
	}
}

// stop ends c at once (Close, and no background delivery).
func stop(c *Conn) {
	c.Close()
	c.evictNow()
	<-c.done
}

// validStream is the frames of a stream of k data frames (payloads from
// rng) and its close, and the bytes they carry.
func validStream(rng *rand.Rand, k int) (frames [][]byte, data []byte) {
	for i := 0; i < k; i++ {
		p := make([]byte, 1+rng.IntN(1460))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		data = append(data, p...)
		frames = append(frames, mkFrame(header{kind: kindData, session: testSession, seq: uint64(i), window: uint16(rng.IntN(100))}, p))
	}
	frames = append(frames, mkFrame(header{kind: kindClose, session: testSession, seq: uint64(k)}, nil))
	return frames, data
}

// accepted reports whether f would be taken as a frame of the fuzz Conn.
func accepted(f []byte) bool {
	h, _, why := parse(f)
	return why == parseOK && h.session == testSession && [6]byte(f[0:6]) == macL && [6]byte(f[6:12]) == macP
}

// FuzzDeliver feeds arbitrary frames to a Demux with an open Conn: it
// must never panic or corrupt the Conn's state, whether the frame fails
// the early checks or (with its addresses, session and sum made valid)
// reaches the protocol with arbitrary sequence, ack, window and SACK
// fields. Then, as a property, a valid stream delivered out of order,
// with duplicates, interleaved with garbage made from the input (the
// raw frame, it under a valid header, valid frames with the input's bytes
// XORed in) still reads as exactly the valid data, in order, then EOF.
func FuzzDeliver(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	vf, _ := validStream(rng, 3)
	for i, fr := range vf {
		f.Add(fr, uint64(i))
	}
	f.Add(mkFrame(header{kind: kindAck, session: testSession, ack: 0, window: 5, sack: 0xf0f0}, nil), uint64(7))
	f.Add(mkFrame(header{kind: kindData, session: testSession, seq: 1 << 63, ack: 1 << 63}, []byte("x")), uint64(8))
	f.Add([]byte{}, uint64(9))
	f.Add(bytes.Repeat([]byte{0xff}, 80), uint64(10))

	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		if len(in) > 16000 {
			in = in[:16000]
		}
		// Part 1: the input alone, then made to pass the early checks.
		d := NewDemux(discardWire{})
		c, err := d.Open(fuzzConfig)
		if err != nil {
			t.Fatal(err)
		}
		d.Deliver(append([]byte(nil), in...))
		if len(in) >= frameOverhead {
			g := append([]byte(nil), in...)
			putEthernet(g, macL, macP)
			h, _, why := parse(append([]byte(nil), g...))
			if why == parseBadSum || why == parseOK {
				h.session = testSession
				h.put(g[ethHeaderLen:], payloadSum(g[frameOverhead:frameOverhead+int(h.length)]))
				d.Deliver(g)
			}
		}
		checkInvariants(t, c)
		c.SetReadDeadline(time.Now().Add(-time.Second))
		c.Read(make([]byte, 100))
		c.Write([]byte("still works"))
		checkInvariants(t, c)
		stop(c)

		// Part 2: the property.
		c, err = d.Open(fuzzConfig)
		if err != nil {
			t.Fatal(err)
		}
		defer stop(c)
		rng := rand.New(rand.NewPCG(seed, uint64(len(in))))
		frames, data := validStream(rng, 1+rng.IntN(40))
		var garbage [][]byte
		garbage = append(garbage, in)
		if len(in) >= ethHeaderLen {
			g := append([]byte(nil), in...)
			putEthernet(g, macL, macP)
			garbage = append(garbage, g)
		}
		for i := 0; i < 4 && len(in) > 0; i++ {
			g := append([]byte(nil), frames[rng.IntN(len(frames))]...)
			off := rng.IntN(len(g))
			for j, b := range in[:min(len(in), 8)] {
				g[(off+j)%len(g)] ^= b
			}
			garbage = append(garbage, g)
		}
		order := rng.Perm(len(frames))
		for _, i := range order {
			for _, g := range garbage {
				if rng.IntN(2) == 0 && !accepted(g) {
					d.Deliver(append([]byte(nil), g...))
				}
			}
			d.Deliver(append([]byte(nil), frames[i]...))
			if rng.IntN(4) == 0 {
				d.Deliver(append([]byte(nil), frames[i]...))
			}
		}
		checkInvariants(t, c)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes (want %d, equal %v): %v; %s", len(got), len(data), bytes.Equal(got, data), err, describe(c))
		}
	})
}

func describe(c *Conn) string {
	return fmt.Sprintf("conn %+v", c.Stats())
}
