package ft

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/net/ethstream"
	"github.com/doppel-ft/doppel/net/linktest"
	"github.com/doppel-ft/doppel/net/netstack"
)

// stackPair is two network stacks on the ends of an in-memory wire.
func stackPair(t *testing.T, cfg linktest.Config) (st [2]*netstack.Stack, ifs [2]*netstack.Interface) {
	t.Helper()
	ea, eb := linktest.Pair(cfg)
	for i, spec := range []string{"10.6.0.1/24", "10.6.0.2/24"} {
		s, err := netstack.New()
		if err != nil {
			t.Fatal(err)
		}
		c, _ := netstack.ParseConfig(spec)
		ifc, err := s.Add([]*linktest.End{ea, eb}[i], c)
		if err != nil {
			t.Fatal(err)
		}
		st[i], ifs[i] = s, ifc
		t.Cleanup(s.Close)
	}
	return st, ifs
}

// listening is a stack pair on a clean wire with a Listener on the first
// stack's port 7900, closed when the test ends.
func listening(t *testing.T) ([2]*netstack.Stack, [2]*netstack.Interface, *Listener, netip.AddrPort) {
	t.Helper()
	st, ifs := stackPair(t, linktest.Config{})
	ap := netip.AddrPortFrom(ifs[0].Config.Addr.Addr(), 7900)
	l, err := Listen(st[0], ifs[0], ap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return st, ifs, l, ap
}

func TestParseTransport(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Transport
		ok   bool
	}{
		{"", TransportTCP, true}, {"tcp", TransportTCP, true}, {"ether", TransportEther, true},
		{"udp", "", false}, {"Ether", "", false},
	} {
		got, err := ParseTransport(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTransport(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestListenBothTransports: one Listener serves a TCP session and an
// ether session; each carries data both ways intact, and the ether one
// runs on ethstream frames (the stream's own counters move, the stack's
// TCP does not carry the bulk).
func TestListenBothTransports(t *testing.T) {
	st, ifs := stackPair(t, linktest.Config{Faults: linktest.Faults{Loss: 0.01, Reorder: 0.01, Seed: 3}})
	ap := netip.AddrPortFrom(ifs[0].Config.Addr.Addr(), 7900)
	l, err := Listen(st[0], ifs[0], ap)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 2 << 20
	for _, tr := range []Transport{TransportTCP, TransportEther} {
		t.Run(string(tr), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			served := make(chan error, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					served <- err
					return
				}
				defer c.Close()
				if got := c.RemoteAddr().Network(); got != string(tr) {
					served <- errors.New("accepted a " + got + " session")
					return
				}
				// Echo the hash of what arrives.
				h := sha256.New()
				if _, err := io.CopyN(h, c, n); err != nil {
					served <- err
					return
				}
				_, err = c.Write(h.Sum(nil))
				served <- err
			}()
			c, err := Dial(ctx, st[1], ifs[1], ap, tr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i*7 + i>>11)
			}
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			sum := make([]byte, sha256.Size)
			if _, err := io.ReadFull(c, sum); err != nil {
				t.Fatal(err)
			}
			if want := sha256.Sum256(data); !bytes.Equal(sum, want[:]) {
				t.Fatal("the data arrived altered")
			}
			if err := <-served; err != nil {
				t.Fatal(err)
			}
			if es, ok := c.(*ethstream.Conn); ok != (tr == TransportEther) {
				t.Fatalf("Dial over %s returned a %T", tr, c)
			} else if ok && es.Stats().DataFramesSent < n/1500 {
				t.Errorf("the stream sent %d data frames for %d bytes", es.Stats().DataFramesSent, n)
			}
		})
	}
}

// TestRendezvousRefusals: a request with another MTU is refused with a
// reason the dialler can print, a garbage request is dropped, and the
// listener goes on serving.
func TestRendezvousRefusals(t *testing.T) {
	st, ifs, l, ap := listening(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdv := netip.AddrPortFrom(ap.Addr(), EtherPort(ap.Port()))
	ask := func(req []byte) []byte {
		t.Helper()
		c, err := st[1].Dial(ctx, rdv)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		ans, _ := io.ReadAll(c)
		return ans
	}
	req := make([]byte, rdvRequestLen)
	copy(req, rdvMagic)
	mac := ifs[1].NIC.MAC()
	copy(req[8:], mac[:])
	binary.BigEndian.PutUint32(req[14:], 42)
	binary.BigEndian.PutUint16(req[18:], 9000)
	if ans := ask(req); len(ans) != rdvAnswerLen || ans[14] != rdvMTU || binary.BigEndian.Uint16(ans[16:]) != 1500 {
		t.Fatalf("answer to a 9000-byte MTU: %x, want status %d and MTU 1500", ans, rdvMTU)
	}
	if ans := ask([]byte("GET / HTTP/1.0\r\n\r\n..")); len(ans) != 0 {
		t.Fatalf("answer to garbage: %q, want none", ans)
	}
	// Still serving: a proper session.
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := Dial(ctx, st[1], ifs[1], ap, TransportEther)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hi" {
		t.Fatalf("after the refusals: read %q, %v", got, err)
	}
	// The dialler's side of a refusal: its error names both MTUs.
	fake, err := st[0].Listen(netip.AddrPortFrom(ap.Addr(), EtherPort(8000)))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	go func() {
		c, err := fake.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.ReadFull(c, make([]byte, rdvRequestLen))
		ans := make([]byte, rdvAnswerLen)
		copy(ans, rdvMagic)
		ans[14] = rdvMTU
		binary.BigEndian.PutUint16(ans[16:], 9000)
		c.Write(ans)
		io.ReadAll(c)
	}()
	_, err = Dial(ctx, st[1], ifs[1], netip.AddrPortFrom(ap.Addr(), 8000), TransportEther)
	if !errors.Is(err, ErrRendezvous) || !strings.Contains(err.Error(), "1500 here, 9000 there") {
		t.Fatalf("dial to a primary with another MTU: %v", err)
	}
}

// TestRendezvousSupersedes: a peer that asks again has given up on the
// stream it was answered before (under Bochs the answer can come after
// the dialler's timeout), so the listener closes that stream: the engine
// must not wait on it for a HELLO that will not come.
func TestRendezvousSupersedes(t *testing.T) {
	st, ifs, l, ap := listening(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dialled [2]net.Conn
	for i := range dialled {
		var err error
		if dialled[i], err = Dial(ctx, st[1], ifs[1], ap, TransportEther); err != nil {
			t.Fatal(err)
		}
		defer dialled[i].Close() // the first is abandoned, not closed
	}
	live := 0
	for range dialled {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("hi")); err == nil {
			live++
		} else if !errors.Is(err, ethstream.ErrClosed) {
			t.Errorf("write on the superseded stream: %v, want ErrClosed", err)
		}
	}
	if live != 1 {
		t.Fatalf("%d of the two accepted streams are open, want the latest only", live)
	}
	got := make([]byte, 2)
	dialled[1].SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadFull(dialled[1], got); err != nil || string(got) != "hi" {
		t.Fatalf("the latest stream read %q, %v", got, err)
	}
}
