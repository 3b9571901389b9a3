package link

import (
	"bytes"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// received records what the stack would be handed, and which packets the
// endpoint had checked.
type received struct {
	pkts    [][]byte
	checked []bool
	protos  []tcpip.NetworkProtocolNumber
}

func (r *received) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.pkts = append(r.pkts, pkt.Data().AsRange().ToSlice())
	r.checked = append(r.checked, pkt.RXChecksumValidated)
	r.protos = append(r.protos, p)
}
func (*received) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

var (
	srcIP = tcpip.AddrFrom4([4]byte{10, 9, 0, 2})
	dstIP = tcpip.AddrFrom4([4]byte{10, 9, 0, 1})
)

// segment returns an Ethernet frame carrying a TCP segment (with a
// timestamp option, as gVisor sends) of payload at seq.
func segment(seq uint32, payload []byte) []byte {
	const tcpLen = header.TCPMinimumSize + 12
	f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+tcpLen+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber,
		SrcAddr: "\x02\x00\x00\x00\x00\x02", DstAddr: "\x02\x00\x00\x00\x00\x01"})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: srcIP, DstAddr: dstIP})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip.Payload())
	tcp.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 7000, SeqNum: seq, AckNum: 1, DataOffset: tcpLen,
		Flags: header.TCPFlagAck, WindowSize: 4096})
	copy(tcp[header.TCPMinimumSize:], []byte{1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9}) // NOP NOP TS
	copy(tcp[tcpLen:], payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, srcIP, dstIP, uint16(len(tcp)))
	tcp.SetChecksum(^tcp.CalculateChecksum(checksum.Checksum(payload, xsum)))
	return f
}

// TestCoalesce: a run of consecutive segments reaches the stack as one
// checked segment with the payloads in order; a corrupted segment is
// counted and dropped by the endpoint (the stack no longer checks) and
// does not take good ones with it.
func TestCoalesce(t *testing.T) {
	payload := func(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }
	for _, tc := range []struct {
		name    string
		n, size int
		corrupt int // index of a segment with a flipped payload bit, or -1
		want    int // packets handed up
	}{
		{"run of 10", 10, 1000, -1, 1},
		{"odd sizes", 5, 999, -1, 1},
		{"one segment", 1, 1448, -1, 1},
		{"corrupt middle", 9, 1000, 4, 2},
		{"corrupt first", 4, 1000, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, r, e := newCoalescer()
			var want []byte
			for i := 0; i < tc.n; i++ {
				p := payload(i, tc.size)
				f := segment(uint32(1000+i*tc.size), p)
				if i == tc.corrupt {
					f[len(f)-1] ^= 0x40
				} else {
					want = append(want, p...)
				}
				e.deliver(g, f)
			}
			for range groFlushes {
				g.Flush()
			}
			if len(r.pkts) != tc.want {
				t.Fatalf("%d packets handed up, want %d", len(r.pkts), tc.want)
			}
			if got := tcpPayload(t, r); !bytes.Equal(got, want) {
				t.Errorf("payload handed up: %d bytes, want %d (or out of order)", len(got), len(want))
			}
			if got, want := e.Stats().RxBadChecksum, uint64(min(1, tc.corrupt+1)); got != want {
				t.Errorf("RxBadChecksum %d, want %d", got, want)
			}
		})
	}
}

// tcpPayload is the TCP payload of the packets r was handed, in order,
// failing if one was not marked checked or its IP total length is not its
// size.
func tcpPayload(t *testing.T, r *received) []byte {
	t.Helper()
	var got []byte
	for i, p := range r.pkts {
		ip := header.IPv4(p)
		if !r.checked[i] || int(ip.TotalLength()) != len(p) {
			t.Fatalf("packet %d: checked %v, %d bytes with IP length %d", i, r.checked[i], len(p), ip.TotalLength())
		}
		got = append(got, header.TCP(p[ip.HeaderLength():]).Payload()...)
	}
	return got
}

// newCoalescer returns an endpoint and GRO whose merged packets r keeps.
func newCoalescer() (*gro.GRO, *received, *Endpoint) {
	g := &gro.GRO{}
	g.Init(true)
	r := &received{}
	g.Dispatcher = r
	return g, r, &Endpoint{}
}

// TestCoalescePadded: a short segment padded to the 60-byte Ethernet
// minimum ends a run; the padding must not become payload.
func TestCoalescePadded(t *testing.T) {
	g, r, e := newCoalescer()
	var want []byte
	for i := 0; i < 4; i++ {
		p := bytes.Repeat([]byte{byte('a' + i)}, 100)
		want = append(want, p...)
		e.deliver(g, segment(uint32(1+i*100), p))
	}
	// A short segment ends the run; NICs pad frames below 60 bytes (a
	// segment without options, say), and QEMU's e1000 hands up the
	// padding. This one keeps the run's options, so GRO merges it, and
	// gets junk after its IP total length.
	short := segment(401, []byte{'z'})
	want = append(want, 'z')
	short = append(short, bytes.Repeat([]byte{0xee}, 7)...) // padding beyond the IP total length
	e.deliver(g, short)
	for range groFlushes {
		g.Flush()
	}
	got := tcpPayload(t, r)
	if !bytes.Equal(got, want) {
		t.Fatalf("payload %q, want %q", got, want)
	}
}

// udpPacket returns an IPv4 packet carrying a UDP datagram of payload,
// with its checksum (or none).
func udpPacket(payload []byte, withChecksum bool) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: srcIP, DstAddr: dstIP})
	ip.SetChecksum(^ip.CalculateChecksum())
	udp := header.UDP(ip.Payload())
	udp.Encode(&header.UDPFields{SrcPort: 68, DstPort: 67, Length: uint16(len(udp))})
	copy(udp.Payload(), payload)
	if withChecksum {
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcIP, dstIP, uint16(len(udp)))
		udp.SetChecksum(^udp.CalculateChecksum(checksum.Checksum(payload, xsum)))
	}
	return b
}

// reheader gives b's IP header a fresh checksum after a change to it.
func reheader(b []byte) {
	header.IPv4(b).SetChecksum(0)
	header.IPv4(b).SetChecksum(^header.IPv4(b).CalculateChecksum())
}

// tcpChecksum gives the TCP segment in IPv4 packet b a fresh checksum.
func tcpChecksum(b []byte) {
	ip := header.IPv4(b)
	tcp := header.TCP(b[ip.HeaderLength():ip.TotalLength()])
	tcp.SetChecksum(0)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
}

// TestCheckIPv4 rejects what the endpoint must not vouch for, now that
// the stack trusts it.
func TestCheckIPv4(t *testing.T) {
	tcp := segment(1, []byte("payload"))[header.EthernetMinimumSize:]
	udp := udpPacket([]byte("dhcp"), true)
	mutate := func(good []byte, f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name  string
		b     []byte
		proto tcpip.TransportProtocolNumber
		err   error
	}{
		{"tcp", tcp, header.TCPProtocolNumber, nil},
		{"tcp padded", append(append([]byte(nil), tcp...), 0, 0, 0), header.TCPProtocolNumber, nil},
		{"ip checksum", mutate(tcp, func(b []byte) { b[8]-- }), 0, errChecksum}, // TTL changed, checksum not
		{"tcp checksum", mutate(tcp, func(b []byte) { b[len(b)-1] ^= 1 }), 0, errChecksum},
		{"tcp fragment", mutate(tcp, func(b []byte) {
			header.IPv4(b).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
			reheader(b)
		}), 0, errFragment},
		{"truncated", tcp[:30], 0, errMalformed},
		{"runt", tcp[:10], 0, errMalformed},
		{"tcp header cut", mutate(tcp[:header.IPv4MinimumSize+10], func(b []byte) {
			header.IPv4(b).SetTotalLength(uint16(len(b)))
			reheader(b)
		}), 0, errMalformed},
		{"tcp data offset past the segment", mutate(tcp, func(b []byte) {
			b[header.IPv4MinimumSize+12] = 15 << 4
			tcpChecksum(b)
		}), 0, errMalformed},
		{"udp", udp, header.UDPProtocolNumber, nil},
		{"udp without checksum", udpPacket([]byte("dhcp"), false), header.UDPProtocolNumber, nil},
		{"udp checksum", mutate(udp, func(b []byte) { b[len(b)-1] ^= 1 }), 0, errChecksum},
		{"udp length past the packet", mutate(udp, func(b []byte) { header.UDP(b[header.IPv4MinimumSize:]).SetLength(200) }), 0, errMalformed},
		{"icmp (the stack checks it)", mutate(tcp, func(b []byte) {
			b[9] = uint8(header.ICMPv4ProtocolNumber)
			b[len(b)-1] ^= 1
			reheader(b)
		}), header.ICMPv4ProtocolNumber, nil},
	} {
		n, proto, err := checkIPv4(tc.b)
		if !errors.Is(err, tc.err) || err == nil && (proto != tc.proto || n != int(header.IPv4(tc.b).TotalLength())) {
			t.Errorf("%s: checkIPv4 = %d, %d, %v; want protocol %d, %v", tc.name, n, proto, err, tc.proto, tc.err)
		}
	}
}

// FuzzReceive feeds a run of good segments and an arbitrary frame (cut
// into pieces at arbitrary points, as frames) through the endpoint's
// receive path: nothing panics, every IPv4 packet handed up is marked as
// the endpoint checked it, and the TCP payload handed up is exactly that
// of the frames checkIPv4 accepts (a bad one never adds to it).
func FuzzReceive(f *testing.F) {
	f.Add(segment(5001, []byte("tail")), 3)
	f.Add(segment(9, nil)[:40], 0)
	f.Add([]byte{}, 1)
	f.Fuzz(func(t *testing.T, frame []byte, k int) {
		var g gro.GRO
		g.Init(true)
		r := &received{}
		g.Dispatcher = r
		e := &Endpoint{}
		wantTCP := 0
		feed := func(fr []byte) {
			if len(fr) >= header.EthernetMinimumSize && header.Ethernet(fr).Type() == header.IPv4ProtocolNumber {
				ip := fr[header.EthernetMinimumSize:]
				if n, proto, err := checkIPv4(ip); err == nil && proto == header.TCPProtocolNumber {
					wantTCP += len(header.TCP(ip[header.IPv4(ip).HeaderLength():n]).Payload())
				}
			}
			e.deliver(&g, fr)
		}
		for i := 0; i < 4; i++ {
			feed(segment(uint32(1+i*1000), bytes.Repeat([]byte{byte(i)}, 1000)))
		}
		feed(append([]byte(nil), frame...))
		if k = k % 8; k < 0 {
			k = -k
		}
		if k > 0 && len(frame) > k {
			feed(append([]byte(nil), frame[:k]...))
		}
		for range groFlushes {
			g.Flush()
		}
		gotTCP := 0
		for i, p := range r.pkts {
			ip := header.IPv4(p)
			if r.protos[i] != header.IPv4ProtocolNumber || ip.TransportProtocol() != header.TCPProtocolNumber {
				continue
			}
			if !r.checked[i] || int(ip.TotalLength()) != len(p) {
				t.Fatalf("TCP packet %d: checked %v, %d bytes with IP length %d", i, r.checked[i], len(p), ip.TotalLength())
			}
			gotTCP += len(header.TCP(p[ip.HeaderLength():]).Payload())
		}
		if gotTCP != wantTCP {
			t.Fatalf("%d bytes of TCP payload handed up, %d accepted", gotTCP, wantTCP)
		}
	})
}

// TestHandleEtherType: frames of a handled EtherType go to the handler,
// whole and not to the stack; other frames still reach the stack; after
// the handler is removed the stack sees that EtherType again. Raw frames
// sent through the endpoint leave as given.
func TestHandleEtherType(t *testing.T) {
	g, r, e := newCoalescer()
	var got [][]byte
	e.HandleEtherType(0x88b6, func(f []byte) { got = append(got, f) })
	raw := make([]byte, 64)
	header.Ethernet(raw).Encode(&header.EthernetFields{Type: 0x88b6,
		SrcAddr: "\x02\x00\x00\x00\x00\x02", DstAddr: "\x02\x00\x00\x00\x00\x01"})
	raw[20] = 0xab
	e.deliver(g, raw)
	e.deliver(g, segment(1, []byte("tcp")))
	g.Flush()
	if len(got) != 1 || !bytes.Equal(got[0], raw) {
		t.Fatalf("handler got %x, want the one raw frame", got)
	}
	if len(r.pkts) != 1 || r.protos[0] != header.IPv4ProtocolNumber {
		t.Fatalf("stack got %d packets (%v), want the one TCP segment", len(r.pkts), r.protos)
	}
	if s := e.Stats(); s.RxHandled != 1 {
		t.Errorf("RxHandled = %d, want 1", s.RxHandled)
	}
	e.HandleEtherType(0x88b6, nil)
	e.deliver(g, raw)
	if len(got) != 1 || len(r.pkts) != 2 {
		t.Fatalf("after removing the handler: handler %d frames, stack %d packets; want 1 and 2", len(got), len(r.pkts))
	}
}

// recycler records the frames handed back to it.
type recycler struct{ back [][]byte }

func (r *recycler) Recycle(frame []byte) { r.back = append(r.back, frame) }

// TestRecycle: a frame the stack was given goes back to the NIC as soon
// as it is delivered, and what the stack holds is its own copy (the frame
// is overwritten after the hand-back); a frame a handler took does not go
// back from the endpoint; a runt goes back too.
func TestRecycle(t *testing.T) {
	g, r, e := newCoalescer()
	rec := &recycler{}
	e.recycler = rec
	var handled [][]byte
	e.HandleEtherType(0x88b6, func(f []byte) { handled = append(handled, f) })
	raw := make([]byte, 64)
	header.Ethernet(raw).Encode(&header.EthernetFields{Type: 0x88b6,
		SrcAddr: "\x02\x00\x00\x00\x00\x02", DstAddr: "\x02\x00\x00\x00\x00\x01"})
	payload := []byte("stays the stack's own")
	seg := segment(1, payload)
	runt := make([]byte, 10)
	for _, f := range [][]byte{seg, raw, runt} {
		e.deliverFrame(g, f)
	}
	for _, f := range rec.back {
		for i := range f {
			f[i] = 0xa5
		}
	}
	g.Flush()
	if len(rec.back) != 2 || &rec.back[0][0] != &seg[0] || &rec.back[1][0] != &runt[0] {
		t.Fatalf("%d frames handed back, want the segment and the runt", len(rec.back))
	}
	if len(handled) != 1 || &handled[0][0] != &raw[0] {
		t.Fatalf("handler got %d frames, want the raw one", len(handled))
	}
	if len(r.pkts) != 1 || !bytes.HasSuffix(r.pkts[0], payload) {
		t.Fatalf("the stack got %x, want a packet ending in %q after the frame was overwritten", r.pkts, payload)
	}
}
