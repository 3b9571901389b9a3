package link

import (
	"bytes"
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
}

func (r *received) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.pkts = append(r.pkts, pkt.Data().AsRange().ToSlice())
	r.checked = append(r.checked, pkt.RXChecksumValidated)
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

// checksumsHold reports whether an IPv4 packet's header and TCP checksums
// are right, as the stack checks them.
func checksumsHold(p []byte) bool {
	ip := header.IPv4(p)
	if !ip.IsChecksumValid() {
		return false
	}
	seg := p[ip.HeaderLength():ip.TotalLength()]
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(seg)))
	return checksum.Checksum(seg, xsum) == 0xffff
}

// TestCoalesce: a run of consecutive segments reaches the stack as one
// segment with the payloads in order and checksums the stack accepts; a
// corrupted segment is not merged (the stack counts and drops it) and
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
		{"corrupt middle", 9, 1000, 4, 3},
		{"corrupt first", 4, 1000, 0, 2},
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
			var got []byte
			bad := 0
			for _, p := range r.pkts {
				if !checksumsHold(p) {
					bad++
					continue
				}
				ip := header.IPv4(p)
				tcp := header.TCP(p[ip.HeaderLength():ip.TotalLength()])
				got = append(got, tcp.Payload()...)
			}
			if wantBad := min(1, tc.corrupt+1); bad != wantBad {
				t.Errorf("%d packets with bad checksums, want %d", bad, wantBad)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("payload of the good packets: %d bytes, want %d (or out of order)", len(got), len(want))
			}
		})
	}
}

// newCoalescer returns an endpoint and GRO whose merged packets r keeps.
func newCoalescer() (*gro.GRO, *received, *Endpoint) {
	g := &gro.GRO{}
	g.Init(true)
	r := &received{}
	g.Dispatcher = coalesced{r}
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
	var got []byte
	for _, p := range r.pkts {
		if !checksumsHold(p) {
			t.Fatalf("a packet with bad checksums went up: %x", p)
		}
		ip := header.IPv4(p)
		if int(ip.TotalLength()) != len(p) {
			t.Errorf("packet of %d bytes says %d", len(p), ip.TotalLength())
		}
		got = append(got, header.TCP(p[ip.HeaderLength():ip.TotalLength()]).Payload()...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("payload %q, want %q", got, want)
	}
}

// TestValidTCPv4 rejects what the endpoint must not vouch for.
func TestValidTCPv4(t *testing.T) {
	good := segment(1, []byte("payload"))[header.EthernetMinimumSize:]
	mutate := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"good", good, true},
		{"ip checksum", mutate(func(b []byte) { b[8]-- }), false}, // TTL changed, checksum not
		{"tcp checksum", mutate(func(b []byte) { b[len(b)-1] ^= 1 }), false},
		{"fragment", mutate(func(b []byte) {
			header.IPv4(b).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
			header.IPv4(b).SetChecksum(0)
			header.IPv4(b).SetChecksum(^header.IPv4(b).CalculateChecksum())
		}), false},
		{"truncated", good[:30], false},
		{"runt", good[:10], false},
		{"udp", mutate(func(b []byte) {
			b[9] = uint8(header.UDPProtocolNumber)
			header.IPv4(b).SetChecksum(0)
			header.IPv4(b).SetChecksum(^header.IPv4(b).CalculateChecksum())
		}), false},
	} {
		if got := validTCPv4(tc.b); got != tc.want {
			t.Errorf("%s: validTCPv4 = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzReceive feeds a run of good segments and an arbitrary frame (cut
// into pieces at arbitrary points, as frames) through the endpoint's
// receive path: nothing panics, and every packet the endpoint checked (and
// GRO may have merged) goes up with checksums that hold over exactly its
// IP total length.
func FuzzReceive(f *testing.F) {
	f.Add(segment(5001, []byte("tail")), 3)
	f.Add(segment(9, nil)[:40], 0)
	f.Add([]byte{}, 1)
	f.Fuzz(func(t *testing.T, frame []byte, k int) {
		var g gro.GRO
		g.Init(true)
		r := &received{}
		g.Dispatcher = coalesced{r}
		e := &Endpoint{}
		for i := 0; i < 4; i++ {
			e.deliver(&g, segment(uint32(1+i*1000), bytes.Repeat([]byte{byte(i)}, 1000)))
		}
		e.deliver(&g, append([]byte(nil), frame...))
		if k = k % 8; k < 0 {
			k = -k
		}
		if k > 0 && len(frame) > k {
			e.deliver(&g, append([]byte(nil), frame[:k]...))
		}
		for range groFlushes {
			g.Flush()
		}
		for i, p := range r.pkts {
			if !r.checked[i] {
				continue // the stack judges it
			}
			ip := header.IPv4(p)
			if int(ip.TotalLength()) != len(p) || !checksumsHold(p) {
				t.Fatalf("merged packet of %d bytes (IP length %d) with bad checksums", len(p), ip.TotalLength())
			}
		}
	})
}
