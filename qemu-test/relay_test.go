package qemutest

import (
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
// frames on the way, as a faulty wire would.
type relay struct {
	loss, reorder           float64
	frames, lost, reordered atomic.Uint64
	ln                      [2]net.Listener
}

// newRelay listens on two loopback ports; side i's QEMU connects to
// Port(i).
func newRelay(t *testing.T, loss, reorder float64, seed uint64) *relay {
	r := &relay{loss: loss, reorder: reorder}
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
	go r.pipe(c[0], c[1], rand.New(rand.NewPCG(seed, 1)))
	go r.pipe(c[1], c[0], rand.New(rand.NewPCG(seed, 2)))
}

// pipe forwards frames from src to dst; a reordered frame is held until
// the next one has gone (or 2 ms have passed).
func (r *relay) pipe(src, dst net.Conn, rng *rand.Rand) {
	defer dst.Close()
	frames := make(chan []byte, 64)
	go func() {
		defer close(frames)
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(src, hdr[:]); err != nil {
				return
			}
			f := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
			copy(f, hdr[:])
			if _, err := io.ReadFull(src, f[4:]); err != nil {
				return
			}
			frames <- f
		}
	}()
	var held []byte
	for {
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
			if _, err := dst.Write(f); err != nil {
				return
			}
			if held != nil {
				dst.Write(held)
				held = nil
			}
		case <-late:
			dst.Write(held)
			held = nil
		}
	}
}
