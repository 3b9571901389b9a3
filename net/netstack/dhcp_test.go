package netstack

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/doppel-ft/doppel/net/linktest"
)

// dhcpServer answers DISCOVER with an OFFER of 10.9.0.77/24 via 10.9.0.1
// and REQUEST for it with an ACK (a NAK for anything else), by broadcast.
func dhcpServer(t *testing.T, s *Stack, nakFirst bool) {
	var wq waiter.Queue
	ep, err := s.s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if err != nil {
		t.Fatal(err)
	}
	ep.SocketOptions().SetBroadcast(true)
	if err := ep.SocketOptions().SetBindToDevice(1); err != nil {
		t.Fatal(err)
	}
	if err := ep.Bind(tcpip.FullAddress{Port: dhcpServerPort}); err != nil {
		t.Fatal(err)
	}
	c := gonet.NewUDPConn(&wq, ep)
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := parseDHCP(buf[:n])
			if err != nil {
				continue
			}
			r := dhcpMsg{op: dhcpOpReply, xid: m.xid, chaddr: m.chaddr, yiaddr: netip.MustParseAddr("10.9.0.77"),
				mask: netip.MustParseAddr("255.255.255.0"), router: netip.MustParseAddr("10.9.0.1"),
				serverID: netip.MustParseAddr("10.9.0.1"), lease: 3600}
			switch {
			case m.msgType == dhcpDiscover:
				r.msgType = dhcpOffer
			case m.msgType == dhcpRequest && nakFirst:
				r.msgType, nakFirst = dhcpNak, false
			case m.msgType == dhcpRequest && m.reqIP == r.yiaddr && m.serverID == r.serverID:
				r.msgType = dhcpAck
			default:
				r.msgType = dhcpNak
			}
			if _, err := c.WriteTo(r.encode(), &net.UDPAddr{IP: net.IPv4bcast.To4(), Port: dhcpClientPort}); err != nil {
				t.Errorf("server: %v", err)
			}
		}
	}()
}

func TestDHCP(t *testing.T) {
	for _, nak := range []bool{false, true} {
		ea, eb := linktest.Pair(linktest.Config{})
		a, _ := New()
		b, _ := New()
		defer a.Close()
		defer b.Close()
		c, _ := ParseConfig("10.9.0.1/24")
		if _, err := a.Add(ea, c); err != nil {
			t.Fatal(err)
		}
		ifc, err := b.Add(eb, Config{DHCP: true})
		if err != nil {
			t.Fatal(err)
		}
		dhcpServer(t, a, nak)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		got, err := b.RunDHCP(ctx, ifc)
		cancel()
		if err != nil {
			t.Fatalf("%v; client sent %+v, server sent %+v; server udp %+v", err, eb.Counters(), ea.Counters(), a.s.Stats().UDP)
		}
		if got.String() != "10.9.0.77/24,gw=10.9.0.1 (dhcp)" || ifc.Config != got {
			t.Fatalf("nak=%v: got %v, interface has %v", nak, got, ifc.Config)
		}
		// The address works: TCP from the server's side to the client.
		l, err := b.Listen(netip.MustParseAddrPort("10.9.0.77:80"))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Close()
			}
		}()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := a.Dial(dctx, netip.MustParseAddrPort("10.9.0.77:80"))
		dcancel()
		if err != nil {
			t.Fatalf("dial the DHCP address: %v", err)
		}
		conn.Close()
		l.Close()
	}
}

func TestDHCPNoServer(t *testing.T) {
	_, b, _, _ := pair(t, linktest.Config{})
	ea, eb := linktest.Pair(linktest.Config{Names: [2]string{"x-0", "x-1"}})
	defer ea.Close()
	ifc, err := b.Add(eb, Config{DHCP: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := b.RunDHCP(ctx, ifc); err == nil {
		t.Fatal("DHCP succeeded with no server")
	}
}

func TestParseDHCP(t *testing.T) {
	m := dhcpMsg{op: dhcpOpReply, xid: 42, chaddr: [6]byte{1, 2, 3, 4, 5, 6}, msgType: dhcpAck,
		yiaddr: netip.MustParseAddr("192.168.1.9"), mask: netip.MustParseAddr("255.255.254.0"),
		router: netip.MustParseAddr("192.168.0.1"), lease: 60}
	b := m.encode()
	got, err := parseDHCP(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, m)
	}
	if c, err := got.config(); err != nil || c.String() != "192.168.1.9/23,gw=192.168.0.1 (dhcp)" {
		t.Fatalf("config %v, %v", c, err)
	}
	for name, bad := range map[string][]byte{
		"short":        b[:100],
		"no cookie":    append(append([]byte{}, b[:236]...), 1, 2, 3, 4),
		"overrun":      append(append([]byte{}, b[:240]...), optMsgType, 5, 1),
		"bad length":   append(append([]byte{}, b[:240]...), optServerID, 3, 1, 2, 3, optEnd),
		"no type":      append(append([]byte{}, b[:240]...), optEnd),
		"not ethernet": append([]byte{2, 6, 6}, b[3:]...),
	} {
		if _, err := parseDHCP(bad); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	m.mask = netip.MustParseAddr("255.0.255.0")
	if _, err := m.config(); err == nil {
		t.Error("a non-prefix mask was accepted")
	}
}

func FuzzParseDHCP(f *testing.F) {
	m := dhcpMsg{op: dhcpOpReply, xid: 1, msgType: dhcpOffer, yiaddr: netip.MustParseAddr("10.0.2.15"),
		mask: netip.MustParseAddr("255.255.255.0"), router: netip.MustParseAddr("10.0.2.2")}
	f.Add(m.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseDHCP(b)
		if err != nil {
			return
		}
		m2, err := parseDHCP(m.encode())
		if err != nil || m2 != m {
			t.Fatalf("re-encoded %+v parses as %+v (%v)", m, m2, err)
		}
		m.config() // must not panic
	})
}
