package main

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/console"
	"github.com/doppel-ft/doppel/ft"
	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/net/netstack"
	"github.com/doppel-ft/doppel/nic/nictest"
)

func TestAutoRole(t *testing.T) {
	for _, c := range []struct {
		me, peer string
		want     ft.Role
	}{
		{"10.9.0.1", "10.9.0.2", ft.RolePrimary},
		{"10.9.0.2", "10.9.0.1", ft.RoleSecondary},
		{"10.9.0.10", "10.9.0.9", ft.RoleSecondary}, // numeric, not textual order
		{"192.168.1.1", "10.0.0.1", ft.RoleSecondary},
	} {
		if got := autoRole(netip.MustParseAddr(c.me), netip.MustParseAddr(c.peer)); got != c.want {
			t.Errorf("autoRole(%s, %s) = %s, want %s", c.me, c.peer, got, c.want)
		}
	}
}

// lines records what reaches the console.
type lines struct{ b []byte }

func (l *lines) Write(p []byte) (int, error) { l.b = append(l.b, p...); return len(p), nil }

// TestConsoleSinkDead: a killed node releases nothing more, and says so.
func TestConsoleSinkDead(t *testing.T) {
	var out lines
	s := &consoleSink{split: vmguest.NewSplitter(&out, noNIC{}, 0, 0)}
	rec := vmguest.AppendSerial(nil, []byte("tick 1\n"))
	if err := s.Release(0, rec); err != nil {
		t.Fatal(err)
	}
	s.dead.Store(true)
	if err := s.Release(uint64(len(rec)), vmguest.AppendSerial(nil, []byte("tick 2\n"))); err == nil {
		t.Fatal("a dead node released output")
	}
	if string(out.b) != "tick 1\n" {
		t.Fatalf("console got %q", out.b)
	}
}

// TestCarrierLost: when the FT NIC loses its link, the secondary's
// blocked read of the link ends with an error the engine takes for a peer
// that closed the link (io.EOF: promote at once), and a link that stays up
// is left alone.
func TestCarrierLost(t *testing.T) {
	nicA, _ := nictest.Pair(nictest.Config{})
	var out lines
	n := &ftNode{k: &kernel{log: console.NewLog(&out, 10, func() time.Duration { return 0 })},
		ifc: &netstack.Interface{NIC: nicA}}
	mine, peer := net.Pipe()
	defer peer.Close()
	c := &carrierConn{ReadWriteCloser: mine}
	done := make(chan struct{})
	defer close(done)
	go n.watchCarrier(c, done)
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("read ended with the link up: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	nicA.SetLink(false)
	select {
	case err := <-read:
		if !errors.Is(err, errCarrierLost) || !errors.Is(err, io.EOF) {
			t.Fatalf("read ended with %v, want errCarrierLost (io.EOF)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked 5 s after the carrier was lost")
	}
}

// abortConn records whether it was aborted or closed.
type abortConn struct {
	net.Conn
	aborted, closed bool
}

func (c *abortConn) Abort() error { c.aborted = true; return nil }
func (c *abortConn) Close() error { c.closed = true; return c.Conn.Close() }

// TestLinkAbortReachesTheStream: the secondary's link as the engine sees
// it (carrier watch, then the link's byte counters) passes an abort down
// to a stream that can abort (ftmirror.Aborter, the ether stream) and
// closes one that cannot (TCP).
func TestLinkAbortReachesTheStream(t *testing.T) {
	for _, abortable := range []bool{true, false} {
		mine, peer := net.Pipe()
		defer peer.Close()
		inner := &abortConn{Conn: mine}
		var under net.Conn = inner
		if !abortable {
			under = struct{ net.Conn }{inner} // hides Abort
		}
		var link ft.Link
		c := &carrierConn{ReadWriteCloser: link.Wrap(under)}
		var rw io.ReadWriteCloser = c
		a, ok := rw.(ftmirror.Aborter)
		if !ok {
			t.Fatal("the secondary's link is not an ftmirror.Aborter")
		}
		if err := a.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if inner.aborted != abortable || inner.closed == abortable {
			t.Errorf("abortable %v: the stream aborted %v, closed %v", abortable, inner.aborted, inner.closed)
		}
	}
}
