package netstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// DHCP ports (RFC 2131 section 4.1).
const (
	dhcpServerPort = 67
	dhcpClientPort = 68
)

// RunDHCP obtains an address for ifc from a DHCP server on its link
// (RFC 2131: DISCOVER, OFFER, REQUEST, ACK; replies asked by broadcast),
// applies it like a flag's and returns it. It retries with backoff (1 s,
// 2 s, 4 s, at most 8 s) until ctx is done. The lease is not renewed: the
// address is kept for the life of the boot.
func (s *Stack) RunDHCP(ctx context.Context, ifc *Interface) (Config, error) {
	// The client speaks from 0.0.0.0 until it has an address.
	any := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: header.IPv4Any.WithPrefix()}
	if err := s.s.AddProtocolAddress(ifc.ID, any, stack.AddressProperties{}); err != nil {
		return Config{}, fmt.Errorf("netstack: dhcp on %s: %s", ifc.NIC.Name(), err)
	}
	defer s.s.RemoveAddress(ifc.ID, header.IPv4Any)
	s.s.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: ifc.ID})
	defer s.s.RemoveRoutes(func(r tcpip.Route) bool {
		return r.NIC == ifc.ID && r.Destination == header.IPv4EmptySubnet && r.Gateway.Len() == 0
	})
	var wq waiter.Queue
	ep, terr := s.s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return Config{}, fmt.Errorf("netstack: dhcp endpoint: %s", terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	ep.SocketOptions().SetReuseAddress(true)
	if err := ep.SocketOptions().SetBindToDevice(int32(ifc.ID)); err != nil {
		ep.Close()
		return Config{}, fmt.Errorf("netstack: dhcp bind to %s: %s", ifc.NIC.Name(), err)
	}
	if err := ep.Bind(tcpip.FullAddress{NIC: ifc.ID, Port: dhcpClientPort}); err != nil {
		ep.Close()
		return Config{}, fmt.Errorf("netstack: dhcp bind port %d: %s", dhcpClientPort, err)
	}
	conn := gonet.NewUDPConn(&wq, ep)
	defer conn.Close()
	c := &dhcpClient{conn: conn, mac: ifc.NIC.MAC()}
	wait := time.Second
	for {
		cfg, err := c.exchange(ctx, wait)
		if err == nil {
			if err := s.setAddr(ifc, cfg); err != nil {
				return Config{}, err
			}
			ifc.Config = cfg
			return cfg, nil
		}
		if ctx.Err() != nil {
			return Config{}, fmt.Errorf("netstack: dhcp on %s: %w (last: %v)", ifc.NIC.Name(), ctx.Err(), err)
		}
		wait = min(2*wait, 8*time.Second)
	}
}

type dhcpClient struct {
	conn *gonet.UDPConn
	mac  [6]byte
}

var bcast = &net.UDPAddr{IP: net.IPv4bcast.To4(), Port: dhcpServerPort}

// exchange runs one DISCOVER..ACK exchange, waiting up to wait for each
// reply.
func (c *dhcpClient) exchange(ctx context.Context, wait time.Duration) (Config, error) {
	xid := rand.Uint32()
	m := dhcpMsg{op: dhcpOpRequest, xid: xid, flags: dhcpFlagBcast, chaddr: c.mac, msgType: dhcpDiscover}
	offer, err := c.roundTrip(ctx, &m, dhcpOffer, wait)
	if err != nil {
		return Config{}, fmt.Errorf("discover: %w", err)
	}
	m.msgType, m.reqIP, m.serverID = dhcpRequest, offer.yiaddr, offer.serverID
	ack, err := c.roundTrip(ctx, &m, dhcpAck, wait)
	if err != nil {
		return Config{}, fmt.Errorf("request %v: %w", offer.yiaddr, err)
	}
	return ack.config()
}

var errNak = errors.New("dhcp: server refused (NAK)")

// roundTrip sends m and returns the first reply of type want to it.
func (c *dhcpClient) roundTrip(ctx context.Context, m *dhcpMsg, want byte, wait time.Duration) (dhcpMsg, error) {
	if _, err := c.conn.WriteTo(m.encode(), bcast); err != nil {
		return dhcpMsg{}, err
	}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.conn.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return dhcpMsg{}, err
		}
		r, err := parseDHCP(buf[:n])
		if err != nil || r.op != dhcpOpReply || r.xid != m.xid || r.chaddr != m.chaddr {
			continue // not ours, or not DHCP: a stray broadcast
		}
		switch r.msgType {
		case want:
			return r, nil
		case dhcpNak:
			return dhcpMsg{}, errNak
		}
	}
}
