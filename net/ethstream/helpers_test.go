package ethstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/net/linktest"
	"github.com/doppel-ft/doppel/nic"
)

// endWire adapts a linktest.End to Wire as the link endpoint does: a
// full ring is waited out on TxReady for a while, then the frame is
// refused (the stream retransmits it).
type endWire struct{ e *linktest.End }

func (w endWire) MTU() int { return w.e.MTU() }

// Recycle hands received frames back as the link endpoint does: the
// linktest end poisons each one, so a stream that read a frame after
// handing it back would deliver garbage.
func (w endWire) Recycle(frame []byte) { w.e.Recycle(frame) }

func (w endWire) SendFrame(frame []byte, more bool) error {
	var timer *time.Timer
	for {
		err := w.e.TransmitMore(frame, more)
		if !errors.Is(err, nic.ErrQueueFull) {
			return err
		}
		if timer == nil {
			timer = time.NewTimer(50 * time.Millisecond)
			defer timer.Stop()
		}
		select {
		case <-w.e.TxReady():
		case <-timer.C:
			return err
		}
	}
}

// side is one machine of a test: its wire end, Demux and Conn.
type side struct {
	end *linktest.End
	d   *Demux
	c   *Conn
}

// testSession is the session test pairs use.
const testSession = 0x5e55

// newPair joins two Demuxes by a linktest wire, with a goroutine per end
// delivering received frames, and opens a Conn on each with cfg (Local,
// Peer and Session filled in where zero). Everything is closed when the
// test ends.
func newPair(tb testing.TB, lc linktest.Config, cfg Config) (a, b *side) {
	tb.Helper()
	return newPairRx(tb, lc, cfg, 0)
}

// newPairRx is newPair whose receive loops pause for rxPause after
// every 32 frames (a receiver that falls behind its NIC).
func newPairRx(tb testing.TB, lc linktest.Config, cfg Config, rxPause time.Duration) (a, b *side) {
	tb.Helper()
	ea, eb := linktest.Pair(lc)
	a, b = &side{end: ea, d: NewDemux(endWire{ea})}, &side{end: eb, d: NewDemux(endWire{eb})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range []*side{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; ; i++ {
				f, err := s.end.Receive(ctx)
				if err != nil {
					return
				}
				s.d.Deliver(f)
				if rxPause > 0 && i%32 == 0 {
					time.Sleep(rxPause)
				}
			}
		}()
	}
	tb.Cleanup(func() {
		for _, s := range []*side{a, b} {
			if s.c != nil {
				s.c.Close()
			}
		}
		for _, s := range []*side{a, b} {
			if s.c != nil {
				waitDone(tb, s.c, 5*time.Second)
			}
		}
		cancel()
		ea.Close()
		wg.Wait()
	})
	if cfg.Session == 0 {
		cfg.Session = testSession
	}
	var err error
	ca, cb := cfg, cfg
	ca.Local, ca.Peer = ea.MAC(), eb.MAC()
	cb.Local, cb.Peer = eb.MAC(), ea.MAC()
	if a.c, err = a.d.Open(ca); err != nil {
		tb.Fatal(err)
	}
	if b.c, err = b.d.Open(cb); err != nil {
		tb.Fatal(err)
	}
	return a, b
}

// receiveLoop hands the end's received frames to d until ctx is done or
// the wire closes.
func receiveLoop(ctx context.Context, e *linktest.End, d *Demux) {
	for {
		f, err := e.Receive(ctx)
		if err != nil {
			return
		}
		d.Deliver(f)
	}
}

// waitDone waits for c's goroutine to exit.
func waitDone(tb testing.TB, c *Conn, d time.Duration) {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		tb.Errorf("conn goroutine still running %v after close (stats %+v)", d, c.Stats())
	}
}

// testData is n reproducible pseudo-random bytes.
func testData(n int, seed byte) []byte {
	p := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(p)
	return p
}

// send writes data to c in Writes of random sizes (a few bytes to 256
// KiB, as the FT engine's messages are), then closes c if close is set.
func send(c *Conn, data []byte, seed uint64, close bool) error {
	rng := rand.New(rand.NewPCG(seed, 9))
	for len(data) > 0 {
		var n int
		switch rng.IntN(4) {
		case 0:
			n = 1 + rng.IntN(64)
		case 1:
			n = 1 + rng.IntN(4096)
		default:
			n = 1 + rng.IntN(256<<10)
		}
		n = min(n, len(data))
		if w, err := c.Write(data[:n]); err != nil || w != n {
			return err
		}
		data = data[n:]
	}
	if close {
		return c.Close()
	}
	return nil
}

// receiveAll reads c to EOF and returns the SHA-256 of what it read and
// how much.
func receiveAll(c *Conn) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, c)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, n, err
}

// transfer sends data from a to b (a closes when done), checks that b
// reads exactly it and then io.EOF, and returns how long it took.
func transfer(tb testing.TB, a, b *Conn, data []byte, limit time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- send(a, data, uint64(len(data)), true) }()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		s, n, err := receiveAll(b)
		got <- result{s, n, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			tb.Fatalf("read after %d bytes: %v", r.n, r.err)
		}
		if r.n != int64(len(data)) || r.sum != sha256.Sum256(data) {
			tb.Fatalf("received %d bytes differing from the %d sent", r.n, len(data))
		}
	case <-time.After(limit):
		tb.Fatalf("transfer of %d bytes not done in %v; sender %+v; receiver %+v", len(data), limit, a.Stats(), b.Stats())
	}
	if err := <-errc; err != nil {
		tb.Fatalf("send: %v", err)
	}
	return time.Since(start)
}

// goroutines waits for the goroutine count to fall to at most n and
// reports the last count seen.
func goroutines(n int, d time.Duration) int {
	end := time.Now().Add(d)
	for {
		g := runtime.NumGoroutine()
		if g <= n || time.Now().After(end) {
			return g
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exchange sends data from a to b without closing a, and checks that b
// reads exactly it (for both directions at once: Close would end a's
// reading too).
func exchange(tb testing.TB, a, b *Conn, data []byte, limit time.Duration) time.Duration {
	start := time.Now()
	errc := make(chan error, 2)
	go func() { errc <- send(a, data, uint64(len(data)), false) }()
	got := make([]byte, len(data))
	go func() {
		_, err := io.ReadFull(b, got)
		errc <- err
	}()
	for i := 0; i < 2; i++ {
		select {
		case err := <-errc:
			if err != nil {
				tb.Errorf("exchange of %d bytes: %v", len(data), err)
				return 0
			}
		case <-time.After(limit):
			tb.Errorf("exchange of %d bytes not done in %v; sender %+v; receiver %+v", len(data), limit, a.Stats(), b.Stats())
			return 0
		}
	}
	if !bytes.Equal(got, data) {
		tb.Errorf("received %d bytes differing from those sent", len(data))
	}
	return time.Since(start)
}
