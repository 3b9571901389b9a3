package ethstream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/net/linktest"
)

// recWire is a Wire that records what is sent (the last few frames) and
// can refuse frames.
type recWire struct {
	mtu    int
	mu     sync.Mutex
	frames [][]byte
	sent   int
}

func (w *recWire) MTU() int { return w.mtu }

func (w *recWire) SendFrame(f []byte, more bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent++
	if len(w.frames) == 64 {
		w.frames = w.frames[1:]
	}
	w.frames = append(w.frames, append([]byte(nil), f...))
	return nil
}

// last returns the frames recorded since the last call.
func (w *recWire) take() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.frames
	w.frames = nil
	return f
}

var (
	macL = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	macP = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
)

// mkFrame builds a frame from the peer to the local end: header h with
// payload, its length and sum filled in.
func mkFrame(h header, payload []byte) []byte {
	f := make([]byte, frameOverhead+len(payload))
	putEthernet(f, macL, macP)
	copy(f[frameOverhead:], payload)
	h.length = uint16(len(payload))
	h.put(f[ethHeaderLen:], payloadSum(payload))
	return f
}

// openRec opens a Conn from macL to macP over a recording wire.
func openRec(t testing.TB, cfg Config) (*Demux, *Conn, *recWire) {
	t.Helper()
	w := &recWire{mtu: 1500}
	d := NewDemux(w)
	cfg.Local, cfg.Peer = macL, macP
	if cfg.Session == 0 {
		cfg.Session = testSession
	}
	c, err := d.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); c.evictNow(); <-c.done })
	return d, c, w
}

// TestBadFrames: frames that are malformed, corrupted, misaddressed, of
// another session, or break the protocol are counted where they belong
// and change nothing; good frames around them still make the stream.
func TestBadFrames(t *testing.T) {
	d, c, _ := openRec(t, Config{})
	data := func(seq uint64, p string) []byte {
		return mkFrame(header{kind: kindData, session: testSession, seq: seq, window: 100}, []byte(p))
	}
	good := data(0, "hello")
	mutate := func(f []byte, fn func(f []byte)) []byte {
		g := append([]byte(nil), f...)
		fn(g)
		return g
	}
	badVersion := mutate(good, func(f []byte) { f[ethHeaderLen+offVersion] = version - 1 })
	badKind := mkFrame(header{kind: 9, session: testSession}, nil)
	otherType := mutate(good, func(f []byte) { f[12] = 0x08; f[13] = 0 })
	tooLong := mutate(good, func(f []byte) { f[ethHeaderLen+offLength+1] = 200 })
	payloadBit := mutate(good, func(f []byte) { f[len(f)-1] ^= 4 })
	headerBit := mutate(good, func(f []byte) { f[ethHeaderLen+offSeq+7] ^= 1 })
	wrongDst := mutate(good, func(f []byte) { f[5] = 0x0c })
	wrongSrc := mutate(good, func(f []byte) { f[11] = 0x0c })
	otherSession := mkFrame(header{kind: kindData, session: testSession + 1}, []byte("x"))
	ackUnsent := mkFrame(header{kind: kindAck, session: testSession, ack: 5, window: 10}, nil)
	empty := mkFrame(header{kind: kindData, session: testSession, seq: 1, window: 100}, nil)
	beyond := data(1<<20, "far")
	// A short frame padded by the NIC: the length field, not the frame's,
	// says where the payload ends.
	padded := append(data(1, " world"), make([]byte, 20)...)

	for _, f := range [][]byte{good[:20], good[:frameOverhead-1], badVersion, badKind, otherType, tooLong,
		payloadBit, headerBit, wrongDst, wrongSrc, otherSession, good, ackUnsent, empty, beyond, good, padded} {
		d.Deliver(f)
	}
	want := DemuxStats{Frames: 6, UnknownSession: 1, Malformed: 6, BadSum: 2, WrongDestination: 1, WrongSource: 1}
	if got := d.Stats(); got != want {
		t.Errorf("demux stats %+v, want %+v", got, want)
	}
	st := c.Stats()
	if st.BadFrames != 3 || st.DuplicateFrames != 1 || st.BytesReceived != 11 {
		t.Errorf("conn stats %+v: want 3 bad frames, 1 duplicate, 11 bytes", st)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(c, buf, 11)
	if err != nil || string(buf[:n]) != "hello world" {
		t.Fatalf("read %q, %v; want \"hello world\"", buf[:n], err)
	}
}

// TestAcksSent: the receiver acknowledges a duplicate and a gap at once,
// and in-order data within the delayed-ack time, with the right fields.
func TestAcksSent(t *testing.T) {
	d, c, w := openRec(t, Config{})
	ack := func(what string) header {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			for _, f := range w.take() {
				if h, _, why := parse(f); why == parseOK && h.kind == kindAck {
					return h
				}
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("no ack after %s", what)
		return header{}
	}
	frame := func(seq uint64) []byte {
		return mkFrame(header{kind: kindData, session: testSession, seq: seq, window: 100}, []byte{byte(seq)})
	}
	d.Deliver(frame(0))
	if h := ack("in-order frame"); h.ack != 1 || h.sack != 0 {
		t.Fatalf("ack %d sack %#x after frame 0", h.ack, h.sack)
	}
	d.Deliver(frame(2))
	if h := ack("a gap"); h.ack != 1 || h.sack != 1 {
		t.Fatalf("ack %d sack %#x after frame 2", h.ack, h.sack)
	}
	d.Deliver(frame(2))
	if h := ack("a duplicate"); h.ack != 1 || h.sack != 1 {
		t.Fatalf("ack %d sack %#x after frame 2 again", h.ack, h.sack)
	}
	d.Deliver(frame(1))
	h := ack("filling the gap")
	if h.ack != 3 || h.sack != 0 || h.session != testSession {
		t.Fatalf("ack %d sack %#x session %#x after frame 1", h.ack, h.sack, h.session)
	}
	if want := c.rcv.n - 3; uint64(h.window) != want {
		t.Fatalf("window %d with 3 frames unread of %d, want %d", h.window, c.rcv.n, want)
	}
	// A hole wider than the bitmap: it starts at the block of the first
	// frame held, 64 frames on.
	d.Deliver(frame(103))
	if h := ack("a wide gap"); h.ack != 3 || h.shift != 1 || h.sack != 1<<35 || h.sackBase() != 68 {
		t.Fatalf("ack %d shift %d sack %#x after frame 103", h.ack, h.shift, h.sack)
	}
	// A probe (an ack asking for one) is answered.
	d.Deliver(mkFrame(header{kind: kindAck, flags: flagAckNow, session: testSession}, nil))
	ack("a probe")
}

// TestOpenErrors: bad configurations, a wire that cannot carry the
// header, and a session in use are refused; a closed Conn's session can
// be opened again at once.
func TestOpenErrors(t *testing.T) {
	d := NewDemux(&recWire{mtu: 1500})
	ok := Config{Local: macL, Peer: macP, Session: 1}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"session 0", func(c *Config) { c.Session = 0 }},
		{"zero local", func(c *Config) { c.Local = [6]byte{} }},
		{"zero peer", func(c *Config) { c.Peer = [6]byte{} }},
		{"same MACs", func(c *Config) { c.Peer = c.Local }},
		{"multicast peer", func(c *Config) { c.Peer[0] = 1 }},
		{"negative send buffer", func(c *Config) { c.SendBuffer = -1 }},
		{"negative receive buffer", func(c *Config) { c.ReceiveBuffer = -1 }},
		{"negative GiveUp", func(c *Config) { c.GiveUp = -time.Second }},
	} {
		cfg := ok
		tc.edit(&cfg)
		if _, err := d.Open(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", tc.name, err)
		}
	}
	if _, err := NewDemux(&recWire{mtu: 60}).Open(ok); !errors.Is(err, ErrConfig) {
		t.Errorf("MTU 60: %v, want ErrConfig", err)
	}
	c, err := d.Open(ok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(ok); !errors.Is(err, ErrSessionInUse) {
		t.Fatalf("second Open of a session: %v", err)
	}
	c.Write([]byte("unacknowledged")) // keeps the closed Conn busy in the background
	c.Close()
	c2, err := d.Open(ok)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer c2.Close()
	waitDone(t, c, 2*time.Second) // the old one was stopped and is gone
	// The session is still c2's.
	d.Deliver(mkFrame(header{kind: kindData, session: 1, window: 10}, []byte("new")))
	buf := make([]byte, 8)
	c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c2.Read(buf); err != nil || string(buf[:n]) != "new" {
		t.Fatalf("the new Conn read %q, %v", buf[:n], err)
	}
	if c.Stats().BytesReceived != 0 {
		t.Fatal("the evicted Conn received data")
	}
}

// TestAddr: the addresses are the MACs, network "ether".
func TestAddr(t *testing.T) {
	_, c, _ := openRec(t, Config{})
	if a := c.LocalAddr(); a.Network() != "ether" || a.String() != "02:00:00:00:00:0a" {
		t.Errorf("local address %s %s", a.Network(), a)
	}
	if a := c.RemoteAddr(); a.String() != "02:00:00:00:00:0b" {
		t.Errorf("remote address %s", a)
	}
}

// TestCloseUnblocksRead: Close from another goroutine ends a blocked
// Read at once with ErrClosed, which wraps net.ErrClosed.
func TestCloseUnblocksRead(t *testing.T) {
	_, b := newPair(t, linktest.Config{}, Config{})
	errc := make(chan error, 1)
	go func() {
		_, err := b.c.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if err := b.c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("Read returned %v after Close", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2 s after Close")
	}
	if _, err := b.c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on a closed Conn: %v", err)
	}
	if _, err := b.c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed Conn: %v", err)
	}
	if err := b.c.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
	if err := b.c.SetDeadline(time.Now()); err == nil {
		t.Fatal("SetDeadline on a closed Conn succeeded")
	}
}

// TestCloseUnblocksWrite: a Write blocked on a full send buffer (the
// peer does not read) returns ErrClosed at Close, with the bytes it
// queued.
func TestCloseUnblocksWrite(t *testing.T) {
	a, _ := newPair(t, linktest.Config{}, Config{SendBuffer: 32 << 10, ReceiveBuffer: 32 << 10})
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := a.c.Write(make([]byte, 1<<20))
		done <- result{n, err}
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("Write of 1 MiB into 64 KiB of buffers returned: %d, %v", r.n, r.err)
	default:
	}
	a.c.Close()
	select {
	case r := <-done:
		if !errors.Is(r.err, ErrClosed) || r.n <= 0 || r.n >= 1<<20 {
			t.Fatalf("Write after Close: %d bytes, %v", r.n, r.err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Write still blocked 2 s after Close")
	}
}

// TestEOFAfterClose: a Conn closed right after its last Write (most of
// the data unacknowledged, frames being lost) still delivers it all in
// the background; the peer reads it, then io.EOF, and its Write fails
// with ErrPeerClosed.
func TestEOFAfterClose(t *testing.T) {
	a, b := newPair(t, linktest.Config{Faults: linktest.Faults{Loss: 0.03, Seed: 12}}, Config{})
	data := testData(1<<20, 6)
	if _, err := a.c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b.c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (equal: %v), %v", len(got), bytes.Equal(got, data), err)
	}
	if _, err := b.c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after EOF: %v", err)
	}
	if _, err := b.c.Write([]byte("anyone?")); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("Write after the peer closed: %v", err)
	}
	waitDone(t, a.c, 2*time.Second)
	if st := a.c.Stats(); st.CloseFramesSent == 0 || st.FastRetransmits+st.TimeoutRetransmits == 0 {
		t.Fatalf("closed sender %+v: no close frame or no retransmissions", st)
	}
}

// TestSimultaneousClose: both ends close with data in flight both ways;
// both goroutines finish promptly.
func TestSimultaneousClose(t *testing.T) {
	a, b := newPair(t, linktest.Config{Faults: linktest.Faults{Loss: 0.02, Seed: 13}}, Config{})
	a.c.Write(testData(256<<10, 7))
	b.c.Write(testData(256<<10, 8))
	a.c.Close()
	b.c.Close()
	waitDone(t, a.c, 3*time.Second)
	waitDone(t, b.c, 3*time.Second)
}

// TestCloseDoesNotWait: Close returns at once even with data
// outstanding to a peer that stopped answering; the Conn goes on
// retransmitting in the background only until GiveUp, then its goroutine
// ends and the session is free.
func TestCloseDoesNotWait(t *testing.T) {
	const giveUp = 300 * time.Millisecond
	a, b := newPair(t, linktest.Config{}, Config{GiveUp: giveUp})
	b.end.SetLinkDown(true)
	a.c.Write(make([]byte, 100<<10))
	start := time.Now()
	a.c.Close()
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("Close took %v", d)
	}
	waitDone(t, a.c, giveUp+2*time.Second)
	if d := time.Since(start); d < giveUp/2 {
		t.Fatalf("the closed Conn stopped delivering after %v, before GiveUp %v", d, giveUp)
	}
	if st := a.c.Stats(); st.TimeoutRetransmits == 0 {
		t.Fatalf("no retransmission after Close: %+v", st)
	}
	if (*a.d.conns.Load())[testSession] != nil {
		t.Fatal("the session is still registered")
	}
}

// TestAbort: with the peer gone and data outstanding, Abort (on an open
// Conn, or after Close) returns at once, and the Conn's goroutine ends and
// frees its session long before GiveUp; blocked and later calls return
// ErrClosed, and nothing more is sent.
func TestAbort(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "open", true: "closed"}[closeFirst], func(t *testing.T) {
			const giveUp = 10 * time.Second
			a, b := newPair(t, linktest.Config{}, Config{GiveUp: giveUp})
			b.end.SetLinkDown(true)
			if _, err := a.c.Write(testData(64<<10, 9)); err != nil {
				t.Fatal(err)
			}
			readErr := make(chan error, 1)
			go func() {
				_, err := a.c.Read(make([]byte, 10))
				readErr <- err
			}()
			time.Sleep(50 * time.Millisecond) // a resend or two, the Read blocked
			if closeFirst {
				if err := a.c.Close(); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			if err := a.c.Abort(); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			if d := time.Since(start); d > 50*time.Millisecond {
				t.Fatalf("Abort took %v", d)
			}
			waitDone(t, a.c, time.Second) // not GiveUp (10 s)
			if (*a.d.conns.Load())[testSession] != nil {
				t.Fatal("the session is still registered after Abort")
			}
			if err := <-readErr; !errors.Is(err, ErrClosed) {
				t.Fatalf("the blocked Read: %v, want ErrClosed", err)
			}
			if _, err := a.c.Write([]byte("x")); !errors.Is(err, ErrClosed) {
				t.Fatalf("Write after Abort: %v, want ErrClosed", err)
			}
			sent := a.end.Counters().TxFrames
			time.Sleep(300 * time.Millisecond) // past several RTOs
			if now := a.end.Counters().TxFrames; now != sent {
				t.Fatalf("%d frames sent after Abort", now-sent)
			}
			if err := a.c.Abort(); err != nil {
				t.Fatalf("a second Abort: %v", err)
			}
		})
	}
}

// TestPeerVanishes: the peer stops answering (its wire end refuses to
// send); with data outstanding the Conn retransmits with backoff and
// fails after GiveUp, Read and Write returning an error wrapping
// ErrTimeout, and the session is free again.
func TestPeerVanishes(t *testing.T) {
	const giveUp = 400 * time.Millisecond
	a, b := newPair(t, linktest.Config{}, Config{GiveUp: giveUp})
	b.end.SetLinkDown(true)
	start := time.Now()
	if _, err := a.c.Write(testData(64<<10, 9)); err != nil {
		t.Fatal(err)
	}
	_, err := a.c.Read(make([]byte, 10))
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Read: %v, want ErrTimeout", err)
	}
	if took < giveUp || took > giveUp+time.Second {
		t.Fatalf("gave up after %v with GiveUp %v", took, giveUp)
	}
	if _, err := a.c.Write([]byte("x")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Write after giving up: %v", err)
	}
	st := a.c.Stats()
	t.Logf("gave up after %v: %+v", took, st)
	if st.Timeouts < 2 || st.TimeoutRetransmits == 0 || st.RTO != maxRTO {
		t.Fatalf("no retransmission with backoff before giving up: %+v", st)
	}
	waitDone(t, a.c, time.Second)
	cfg := a.c.cfg
	c, err := a.d.Open(cfg)
	if err != nil {
		t.Fatalf("Open of the failed Conn's session: %v", err)
	}
	c.Close()
}

// TestDeadlines: read and write deadlines in the past, in the future,
// moved while a call waits, and cleared, with the standard library's
// timeout error; a timed-out Write keeps the stream consistent.
func TestDeadlines(t *testing.T) {
	a, b := newPair(t, linktest.Config{}, Config{SendBuffer: 32 << 10, ReceiveBuffer: 32 << 10})
	buf := make([]byte, 100)
	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
	}

	b.c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := b.c.Read(buf); !isTimeout(err) {
		t.Fatalf("Read past its deadline: %v", err)
	}
	start := time.Now()
	b.c.SetReadDeadline(start.Add(50 * time.Millisecond))
	if _, err := b.c.Read(buf); !isTimeout(err) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("Read with a 50 ms deadline: %v after %v", err, time.Since(start))
	}

	// A deadline set while Read waits ends it.
	b.c.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := b.c.Read(buf)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	select {
	case err := <-errc:
		if !isTimeout(err) {
			t.Fatalf("Read after a deadline set while it waited: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a deadline set while Read waited did not end it")
	}

	// A deadline moved later while Read waits: data before it is read.
	b.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	go func() {
		n, err := b.c.Read(buf)
		if err == nil && string(buf[:n]) != "late" {
			err = errors.New("read " + string(buf[:n]))
		}
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.c.SetReadDeadline(time.Now().Add(time.Second))
	time.Sleep(100 * time.Millisecond)
	a.c.Write([]byte("late"))
	if err := <-errc; err != nil {
		t.Fatalf("Read with its deadline moved later: %v", err)
	}
	b.c.SetReadDeadline(time.Time{})

	// Write: the peer does not read, the buffers fill, the deadline ends
	// the Write part way.
	data := testData(1<<20, 10)
	a.c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := a.c.Write(data)
	if !isTimeout(err) || n == 0 || n == len(data) {
		t.Fatalf("Write with a deadline into full buffers: %d bytes, %v", n, err)
	}
	a.c.SetWriteDeadline(time.Now().Add(-time.Second))
	if k, err := a.c.Write(data[n:]); k != 0 || !isTimeout(err) {
		t.Fatalf("Write past its deadline: %d, %v", k, err)
	}
	// Cleared, the rest goes; the reader gets exactly the stream.
	a.c.SetDeadline(time.Time{})
	go func() {
		_, err := a.c.Write(data[n:])
		errc <- err
	}()
	got := make([]byte, len(data))
	b.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b.c, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after a timed-out Write the stream differs (%v)", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// failingWire refuses every tenth frame, as a ring that stays full or a
// link that flaps would.
type failingWire struct {
	Wire
	n atomic.Uint64
}

func (w *failingWire) SendFrame(f []byte, more bool) error {
	if w.n.Add(1)%10 == 0 {
		return errors.New("refused")
	}
	return w.Wire.SendFrame(f, more)
}

// TestSendErrors: frames the Wire refuses are retransmitted like lost
// ones.
func TestSendErrors(t *testing.T) {
	ea, eb := linktest.Pair(linktest.Config{})
	defer ea.Close()
	da, db := NewDemux(&failingWire{Wire: endWire{ea}}), NewDemux(endWire{eb})
	go receiveLoop(t.Context(), ea, da)
	go receiveLoop(t.Context(), eb, db)
	a, err := da.Open(Config{Local: ea.MAC(), Peer: eb.MAC(), Session: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := db.Open(Config{Local: eb.MAC(), Peer: ea.MAC(), Session: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	transfer(t, a, b, testData(1<<20, 11), 20*time.Second)
	if st := a.Stats(); st.SendErrors == 0 || st.FastRetransmits+st.TimeoutRetransmits == 0 {
		t.Fatalf("sender %+v", st)
	}
}

// TestNoGoroutineLeak: after Conns that transferred, failed, were
// evicted or were closed with data outstanding, no goroutine is left.
func TestNoGoroutineLeak(t *testing.T) {
	before := goroutines(0, 0)
	t.Run("pairs", func(t *testing.T) {
		a, b := newPair(t, linktest.Config{Faults: linktest.Faults{Loss: 0.02, Seed: 14}}, Config{GiveUp: 300 * time.Millisecond})
		transfer(t, a.c, b.c, testData(256<<10, 12), 10*time.Second)
		c, d := newPair(t, linktest.Config{}, Config{GiveUp: 300 * time.Millisecond})
		d.end.SetLinkDown(true)
		c.c.Write(make([]byte, 10000))
		d.c.Write(make([]byte, 10000))
		if _, err := c.c.Read(make([]byte, 1)); !errors.Is(err, ErrTimeout) {
			t.Errorf("Read from a vanished peer: %v", err)
		}
		_, _, _ = openRec(t, Config{})
	})
	if g := goroutines(before, 5*time.Second); g > before {
		t.Fatalf("%d goroutines after the test, %d before", g, before)
	}
}
