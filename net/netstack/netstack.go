// Package netstack is doppel's IP stack: gVisor's tcpip (IPv4, ARP, TCP,
// UDP) over the NICs, each bound through a link.Endpoint, with addresses
// set by boot flags (`doppel.net.<nic>=<cidr>[,gw=<addr>]`, config.go).
// Connections are the standard net.Conn and net.Listener (gVisor's gonet
// adapters), so the FT link and net/http run on it unchanged.
package netstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/doppel-ft/doppel/net/ethstream"
	"github.com/doppel-ft/doppel/net/link"
	"github.com/doppel-ft/doppel/nic"
)

// TCP buffer sizes. The FT link streams checkpoints of megabytes: a window
// of a few MiB keeps a wire of a few hundred MB/s busy across the stack's
// scheduling delays (bandwidth-delay product at 1 GB/s and 4 ms).
const (
	tcpBufMin     = 4 << 10
	tcpBufDefault = 1 << 20
	tcpBufMax     = 8 << 20
)

// minRTO replaces TCP's usual 200 ms floor on the retransmission timeout
// (RFC 6298 asks for 1 s, Linux uses 200 ms). The FT link is a dedicated
// LAN wire with sub-millisecond round trips, and its heartbeat deadline is
// a few hundred milliseconds: a lost segment must be resent well inside it.
//
// maxRTO caps the timeout's exponential backoff for the same reason: on a
// loaded machine the smoothed RTT variance can push one timeout past a
// second, longer than the heartbeat deadline, and the FT session would be
// declared dead while TCP waits to resend one segment.
//
// maxRetries undoes a side effect of that cap: TCP gives up on a segment
// after its retransmission limit (15 by default, about 3 s at a 200 ms
// cap), which is shorter than the FT heartbeat deadline on a loaded
// machine. A full run once lost an FT session that way ("write: operation
// timed out") while the peer was alive but stalled. The FT engine, not
// TCP, decides when a peer is lost, so TCP keeps retrying for a minute.
const (
	minRTO     = 20 * time.Millisecond
	maxRTO     = 200 * time.Millisecond
	maxRetries = int(time.Minute / maxRTO)
)

// recovery is TCP's loss recovery: SACK-based (RFC 6675), without RACK
// (RFC 8985), gVisor's default at this version. A receiver that stops
// draining its NIC for a moment (a descheduled receive goroutine, a
// loaded host) overflows the receive ring and loses a burst of frames.
// Most such bursts RACK recovers as fast as SACK does, but now and then
// it falls into a run of timeouts whose retransmissions overflow the ring
// again: in 10 transfers of 32 MiB through a 256-frame ring whose
// receiver stalls, the slowest took 18.9 s (815 timeouts) and 6.5 s
// against 1.4 s for the stalls alone, while SACK recovery's slowest took
// 1.44 s (BenchmarkStallRecovery). On a loaded CI host the FT link fell
// silent for 8.7 s mid-sync that way, with 35 timeouts.
const recovery = tcpip.TCPRecovery(0)

// Stack is one network stack with its interfaces.
type Stack struct {
	s *stack.Stack

	mu   sync.Mutex
	ifs  []*Interface
	byID map[tcpip.NICID]*Interface
}

// Interface is a NIC attached to the stack.
type Interface struct {
	ID   tcpip.NICID
	NIC  nic.NIC
	Link *link.Endpoint
	// Stream carries net/ethstream sessions on the NIC beside the stack
	// (the FT link's ether transport).
	Stream *ethstream.Demux
	// Config is the address configuration applied (by flag or DHCP).
	Config Config
}

// New returns a stack with IPv4, ARP, TCP (SACK recovery, large buffers)
// and UDP.
func New() (*Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(true)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpBufMin, Default: tcpBufDefault, Max: tcpBufMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcpBufMin, Default: tcpBufDefault, Max: tcpBufMax}
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	rtoMin, rtoMax := tcpip.TCPMinRTOOption(minRTO), tcpip.TCPMaxRTOOption(maxRTO)
	retries := tcpip.TCPMaxRetriesOption(maxRetries)
	rec := recovery
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &rcv, &snd, &mod, &rtoMin, &rtoMax, &retries, &rec} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			s.Close()
			return nil, fmt.Errorf("netstack: tcp option %T: %s", opt, err)
		}
	}
	return &Stack{s: s, byID: map[tcpip.NICID]*Interface{}}, nil
}

// LimitTCPBuffers caps every TCP socket's send and receive buffer at max
// bytes (the default is tcpBufMax), and so the window a receiver offers.
// A slow wire that drops what arrives in bursts (Bochs's NIC polls its
// back end once per emulated millisecond, and bxhub's UDP socket
// overflows behind it) carries TCP better with a window it can absorb.
func (s *Stack) LimitTCPBuffers(max int) error {
	if max < tcpBufMin {
		return fmt.Errorf("netstack: TCP buffer limit %d below the minimum %d", max, tcpBufMin)
	}
	def := min(tcpBufDefault, max)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpBufMin, Default: def, Max: max}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcpBufMin, Default: def, Max: max}
	for _, opt := range []tcpip.SettableTransportProtocolOption{&rcv, &snd} {
		if err := s.s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("netstack: tcp option %T: %s", opt, err)
		}
	}
	return nil
}

// Stack returns gVisor's stack (for its statistics and options).
func (s *Stack) Stack() *stack.Stack { return s.s }

// Close closes every interface and the stack.
func (s *Stack) Close() {
	s.s.Close()
	s.s.Wait()
}

// Add attaches n to the stack and applies cfg (an address and gateway;
// DHCP is started by the caller with RunDHCP).
func (s *Stack) Add(n nic.NIC, cfg Config) (*Interface, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := tcpip.NICID(len(s.ifs) + 1)
	ep := link.New(n)
	if err := s.s.CreateNICWithOptions(id, ep, stack.NICOptions{Name: n.Name()}); err != nil {
		return nil, fmt.Errorf("netstack: attach %s: %s", n.Name(), err)
	}
	ifc := &Interface{ID: id, NIC: n, Link: ep, Stream: ethstream.NewDemux(ep.Raw())}
	ep.HandleEtherType(ethstream.EtherType, ifc.Stream.Deliver)
	s.ifs = append(s.ifs, ifc)
	s.byID[id] = ifc
	if cfg.Addr.IsValid() {
		if err := s.setAddr(ifc, cfg); err != nil {
			return nil, err
		}
	}
	ifc.Config = cfg
	return ifc, nil
}

// setAddr gives ifc its address, the route to its subnet and, with a
// gateway, the default route.
func (s *Stack) setAddr(ifc *Interface, cfg Config) error {
	p := cfg.Addr
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom4(p.Addr().As4()), PrefixLen: p.Bits()}}
	if err := s.s.AddProtocolAddress(ifc.ID, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("netstack: %s address %v: %s", ifc.NIC.Name(), p, err)
	}
	subnet := pa.AddressWithPrefix.Subnet()
	routes := []tcpip.Route{{Destination: subnet, NIC: ifc.ID}}
	if cfg.Gateway.IsValid() {
		zero, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{}), tcpip.MaskFromBytes(make([]byte, 4)))
		routes = append(routes, tcpip.Route{Destination: zero, Gateway: tcpip.AddrFrom4(cfg.Gateway.As4()), NIC: ifc.ID})
	}
	for _, r := range routes {
		s.s.AddRoute(r)
	}
	// Best effort: a NIC whose link is down now learns nothing from it
	// anyway, and peers still find this address by ARP.
	ifc.Link.Announce(p.Addr().As4())
	return nil
}

// Interfaces returns the attached interfaces in order.
func (s *Stack) Interfaces() []*Interface {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Interface(nil), s.ifs...)
}

// Interface returns the interface whose NIC has that name.
func (s *Stack) Interface(name string) (*Interface, bool) {
	for _, ifc := range s.Interfaces() {
		if ifc.NIC.Name() == name {
			return ifc, true
		}
	}
	return nil, false
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	fa := tcpip.FullAddress{Port: ap.Port()}
	if ap.Addr().IsValid() && !ap.Addr().IsUnspecified() {
		fa.Addr = tcpip.AddrFrom4(ap.Addr().Unmap().As4())
	}
	return fa
}

// Listen listens for TCP connections on ap (an unspecified address
// listens on every interface).
func (s *Stack) Listen(ap netip.AddrPort) (net.Listener, error) {
	l, err := gonet.ListenTCP(s.s, fullAddr(ap), ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("netstack: listen %v: %w", ap, err)
	}
	return l, nil
}

// Dial connects to ap over TCP.
func (s *Stack) Dial(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	c, err := gonet.DialContextTCP(ctx, s.s, fullAddr(ap), ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("netstack: dial %v: %w", ap, err)
	}
	return c, nil
}

// TCPStats are the stack's TCP counters the FT link reports.
type TCPStats struct {
	Retransmits, FastRetransmits, Timeouts, SegmentsSent, SegmentsReceived uint64
	// ChecksumErrors counts packets dropped for a wrong IPv4 header, TCP
	// or UDP checksum; IPMalformed counts IP packets dropped as malformed
	// (a truncated or inconsistent header), whatever their transport. Both
	// include the drops of the interfaces' link endpoints, which check
	// received packets for the stack (link.Stats).
	ChecksumErrors, IPMalformed uint64
}

// TCP returns the stack-wide TCP counters.
func (s *Stack) TCP() TCPStats {
	st := s.s.Stats()
	t := st.TCP
	ts := TCPStats{Retransmits: t.Retransmits.Value(), FastRetransmits: t.FastRetransmit.Value(),
		Timeouts: t.Timeouts.Value(), SegmentsSent: t.SegmentsSent.Value(), SegmentsReceived: t.ValidSegmentsReceived.Value(),
		ChecksumErrors: t.ChecksumErrors.Value(), IPMalformed: st.IP.MalformedPacketsReceived.Value()}
	for _, ifc := range s.Interfaces() {
		ls := ifc.Link.Stats()
		ts.ChecksumErrors += ls.RxBadChecksum
		ts.IPMalformed += ls.RxMalformed
	}
	return ts
}
