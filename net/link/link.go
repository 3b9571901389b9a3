// Package link binds gVisor's network stack (gvisor.dev/gvisor/pkg/tcpip)
// to a doppel NIC: Endpoint is a stack.LinkEndpoint whose frames go out
// through nic.NIC.Transmit and come in from nic.NIC.Receive on one
// goroutine. It speaks Ethernet II (IEEE 802.3 clause 3.2.6 type field):
// the stack resolves addresses with ARP, the endpoint adds and strips the
// 14-byte header. The endpoint verifies received IPv4 packets itself (the
// header, and the TCP and UDP checksums) and tells the stack so
// (stack.CapabilityRXChecksumOffload): each received byte is summed once,
// where the stack and a merged segment's new checksums (below) took two
// passes more. Checksums of sent packets are the stack's, but for the
// segments a NIC cuts itself.
//
// The stack's work per TCP segment, not per byte, limits the FT link on a
// slow (above all an emulated) CPU, so the endpoint offers it offloads:
// on receive, frames already queued are coalesced into one segment per
// run (stack/gro, after the endpoint's check; the merged segment keeps
// its first part's checksums, which nothing reads again); on send TCP
// handles up to 64 KiB as one segment, which a NIC with TCP segmentation (nic.Segmenter: e1000) cuts
// into frames itself, making each frame's headers and checksums, and
// which otherwise gVisor cuts as it writes them (stack.GSOGvisor). Each
// can be turned off for comparisons (SetGRO, SetGSO, SetTSO;
// doppel.net.gro, doppel.net.gso, doppel.net.tso).
//
// A transport beside IP shares the NIC through the endpoint: frames of an
// EtherType it claims (HandleEtherType) go to it before the stack sees
// them, and it sends its own frames through the same ring (Raw), as
// net/ethstream does for the FT link.
package link

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"

	"github.com/doppel-ft/doppel/nic"
)

// txWait bounds how long WritePackets waits for ring space after
// nic.ErrQueueFull before it drops the frame (TCP retransmits it). The
// wait is the back-pressure: the sender slows to the wire's pace instead
// of losing frames while the ring drains.
const txWait = 50 * time.Millisecond

// EtherTypeProbe is the EtherType of raw probe frames (IEEE 802 "local
// experimental" 0x88B5): the endpoint counts them instead of delivering
// them, so the raw throughput of a wire can be measured beside TCP's.
const EtherTypeProbe = 0x88b5

// Probe counts received probe frames.
type Probe struct {
	Frames, Bytes uint64
	First, Last   time.Time
}

// MBps is the probe's received rate between its first and last frame.
func (p Probe) MBps() float64 {
	d := p.Last.Sub(p.First).Seconds()
	if p.Frames < 2 || d <= 0 {
		return 0
	}
	return float64(p.Bytes) / d / 1e6
}

// Stats are the endpoint's own counters (the NIC keeps the wire's).
type Stats struct {
	// TxDropped counts frames dropped because the ring stayed full for
	// txWait, the link was down or the NIC refused them.
	TxDropped uint64
	// TxWaits counts waits for ring space.
	TxWaits uint64
	// RxRunts counts received frames shorter than an Ethernet header.
	RxRunts uint64
	// RxMalformed counts IPv4 packets dropped for a malformed IP, TCP or
	// UDP header (lengths that do not fit), and RxBadChecksum those
	// dropped for a wrong IP header, TCP or UDP checksum: the stack would
	// have dropped them, and no longer checks.
	RxMalformed, RxBadChecksum uint64
	// RxFragments counts dropped IPv4 fragments of TCP or UDP: a fragment's
	// transport checksum covers the whole datagram, so the endpoint cannot
	// vouch for it. doppel's peers send whole segments (TCP stays below
	// the MSS; DHCP messages fit a frame).
	RxFragments uint64
	// RxHandled counts frames handed to an EtherType's handler
	// (HandleEtherType) instead of the stack.
	RxHandled uint64
}

// Endpoint is a stack.LinkEndpoint over one nic.NIC.
type Endpoint struct {
	nic nic.NIC
	// recycler is nic as a nic.Recycler, or nil: received frames the
	// endpoint is done with go back to the driver.
	recycler nic.Recycler

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	mtu        uint32
	addr       tcpip.LinkAddress
	onClose    func()
	cancel     context.CancelFunc // stops the receive goroutine

	probeMu sync.Mutex
	probe   Probe

	// handlers are the EtherTypes taken before the stack (HandleEtherType).
	handlers  atomic.Pointer[map[uint16]func([]byte)]
	rxHandled atomic.Uint64

	noGRO atomic.Bool // SetGRO(false): every frame goes up on its own
	noGSO atomic.Bool // SetGSO(false): TCP handles every segment itself
	noTSO atomic.Bool // SetTSO(false): gVisor segments, not the NIC

	txMu        sync.Mutex // one writer at a time keeps frames in order
	txFrame     []byte     // reused to gather a packet's pieces (under txMu; the NIC copies it)
	txDropped   atomic.Uint64
	txWaits     atomic.Uint64
	rxRunts     atomic.Uint64
	rxMalformed atomic.Uint64
	rxChecksum  atomic.Uint64
	rxFrags     atomic.Uint64
}

var (
	_ stack.LinkEndpoint = (*Endpoint)(nil)
	_ stack.GSOEndpoint  = (*Endpoint)(nil)
)

// New returns an endpoint over n. Frames are received once the stack
// attaches it (stack.CreateNIC).
func New(n nic.NIC) *Endpoint {
	m := n.MAC()
	r, _ := n.(nic.Recycler)
	return &Endpoint{nic: n, recycler: r, mtu: uint32(n.MTU()), addr: tcpip.LinkAddress(m[:])}
}

// NIC returns the device under the endpoint.
func (e *Endpoint) NIC() nic.NIC { return e.nic }

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() Stats {
	return Stats{TxDropped: e.txDropped.Load(), TxWaits: e.txWaits.Load(), RxRunts: e.rxRunts.Load(),
		RxMalformed: e.rxMalformed.Load(), RxBadChecksum: e.rxChecksum.Load(), RxFragments: e.rxFrags.Load(), RxHandled: e.rxHandled.Load()}
}

// MTU is the IP MTU: the NIC's payload size.
func (e *Endpoint) MTU() uint32 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.mtu
}

// SetMTU lowers (or restores) the MTU the stack uses; it never exceeds the
// NIC's, which would make the NIC refuse frames.
func (e *Endpoint) SetMTU(mtu uint32) {
	e.mu.Lock()
	e.mtu = min(mtu, uint32(e.nic.MTU()))
	e.mu.Unlock()
}

// MaxHeaderLength is the Ethernet header.
func (*Endpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress is the NIC's MAC.
func (e *Endpoint) LinkAddress() tcpip.LinkAddress {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.addr
}

// SetLinkAddress changes the source address of outgoing frames (the NIC's
// receive filter is not reprogrammed).
func (e *Endpoint) SetLinkAddress(a tcpip.LinkAddress) {
	e.mu.Lock()
	e.addr = a
	e.mu.Unlock()
}

// Capabilities: addresses are resolved with ARP; received IPv4 packets'
// header, TCP and UDP checksums are checked here (deliver), so the stack
// skips them. The capability is the endpoint's, not a packet's: every
// IPv4 packet handed up must have been checked.
func (*Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
}

// ARPHardwareType is Ethernet.
func (*Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader pushes the Ethernet header of an outgoing packet.
func (e *Endpoint) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = e.LinkAddress()
	}
	eth.Encode(&header.EthernetFields{SrcAddr: src, DstAddr: pkt.EgressRoute.RemoteLinkAddress, Type: pkt.NetworkProtocolNumber})
}

// ParseHeader consumes the Ethernet header of an incoming packet.
func (*Endpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Attach starts (dispatcher non-nil) or stops (nil) delivering received
// frames to the stack. It does not wait for the receive goroutine: the
// stack calls Attach(nil) holding its lock, which that goroutine may be
// waiting for inside DeliverNetworkPacket.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancel != nil {
		e.cancel()
		e.cancel = nil
	}
	e.dispatcher = d
	if d != nil {
		ctx, c := context.WithCancel(context.Background())
		e.cancel = c
		go e.receive(ctx, d)
	}
}

// IsAttached reports whether a dispatcher receives frames.
func (e *Endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Wait returns at once. gVisor calls it from Stack.Wait holding the
// stack's lock, which the receive goroutine may be waiting for inside
// DeliverNetworkPacket; waiting for that goroutine here would deadlock.
// The goroutine ends by itself once Receive returns (its context is
// cancelled by Attach(nil) or the NIC is closed); a frame it is delivering
// meanwhile meets a removed NIC, which the stack drops.
func (*Endpoint) Wait() {}

// Close detaches the endpoint and closes the NIC.
func (e *Endpoint) Close() {
	e.Attach(nil)
	e.nic.Close()
	e.mu.Lock()
	f := e.onClose
	e.onClose = nil
	e.mu.Unlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction sets a function Close calls.
func (e *Endpoint) SetOnCloseAction(f func()) {
	e.mu.Lock()
	e.onClose = f
	e.mu.Unlock()
}

// groBatch bounds how many already-queued frames the receive goroutine
// takes before it flushes coalesced segments up the stack.
const groBatch = 64

// groFlushes is how often a batch's end calls gro.GRO.Flush: at this
// gVisor version Flush hands up only the first packet of each bucket (it
// steps to the next list entry after resetting the one it removed), and a
// bucket holds up to 8 (groBucketSize), one per flow; a packet left behind
// would wait for the next frame, which may never come.
const groFlushes = 8

// receive delivers frames until ctx is done or the NIC fails. Frames that
// are already queued when one arrives are taken with it and passed through
// gVisor's generic receive offload (stack/gro), which merges consecutive
// segments of a TCP stream into one before the stack sees them: the stack's
// work per segment, not the bytes, is what limits TCP on a slow CPU (an
// emulated one above all), and a bulk transfer arrives in runs. The
// endpoint checks each TCP segment's checksums itself before GRO sees it.
func (e *Endpoint) receive(ctx context.Context, d stack.NetworkDispatcher) {
	var g gro.GRO
	g.Init(true)
	g.Dispatcher = d
	// A done context makes Receive return at once when nothing is queued.
	now, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		frame, err := e.nic.Receive(ctx)
		if err != nil {
			return // ctx done, or the NIC closed
		}
		e.deliverFrame(&g, frame)
		for i := 0; i < groBatch && !e.noGRO.Load(); i++ {
			frame, err := e.nic.Receive(now)
			if err != nil {
				break
			}
			e.deliverFrame(&g, frame)
		}
		for range groFlushes {
			g.Flush()
		}
	}
}

// SupportedGSO offers segmentation offload: TCP keeps segments of up to
// GSOMaxSize in its send queue and handles each as one (sequence space,
// retransmission list, timers, SACK). Where the NIC segments TCP itself
// (nic.Segmenter: e1000) the segment goes to it whole (stack.HostGSO-
// Supported), and the device makes each frame's headers and checksums;
// otherwise TCP cuts it into frames of the MSS as it writes them
// (stack.GSOGvisor), and the work per frame that remains is the headers'
// and the checksum's.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	switch {
	case e.noGSO.Load():
		return stack.GSONotSupported
	case e.segmenter() != nil:
		return stack.HostGSOSupported
	}
	return stack.GVisorGSOSupported
}

// GSOMaxSize is the largest segment TCP hands to GSO, its IP header
// included.
func (e *Endpoint) GSOMaxSize() uint32 {
	if s := e.segmenter(); s != nil {
		return uint32(s.MaxSegment() - header.EthernetMinimumSize)
	}
	return stack.GVisorGSOMaxSize
}

// segmenter returns the NIC as a nic.Segmenter if it is one and the
// offload is on.
func (e *Endpoint) segmenter() nic.Segmenter {
	if s, ok := e.nic.(nic.Segmenter); ok && s.MaxSegment() > 0 && !e.noTSO.Load() {
		return s
	}
	return nil
}

// SetGSO turns segmentation offload on (the default) or off, for
// comparisons; it applies to connections made afterwards.
func (e *Endpoint) SetGSO(on bool) { e.noGSO.Store(!on) }

// SetTSO turns the NIC's own TCP segmentation on (the default, where the
// NIC has it) or off, leaving gVisor's; it applies to connections made
// afterwards.
func (e *Endpoint) SetTSO(on bool) { e.noTSO.Store(!on) }

// SetGRO turns receive coalescing on (the default) or off, for
// comparisons.
func (e *Endpoint) SetGRO(on bool) { e.noGRO.Store(!on) }

// deliverFrame delivers one received frame and hands it back to the
// driver unless a handler took it.
func (e *Endpoint) deliverFrame(g *gro.GRO, frame []byte) {
	if !e.deliver(g, frame) && e.recycler != nil {
		e.recycler.Recycle(frame)
	}
}

// deliver checks one frame and hands it to GRO (which passes anything but
// TCP over IPv4 or IPv6 straight on), or counts it as a probe, a runt or
// an invalid IPv4 packet. It reports whether a handler took the frame;
// otherwise the endpoint is done with it when deliver returns (the stack
// copies a packet into its own buffers: buffer.MakeWithData).
func (e *Endpoint) deliver(g *gro.GRO, frame []byte) (handled bool) {
	if len(frame) < header.EthernetMinimumSize {
		e.rxRunts.Add(1)
		return false
	}
	if hs := e.handlers.Load(); hs != nil {
		if h, ok := (*hs)[uint16(header.Ethernet(frame).Type())]; ok {
			e.rxHandled.Add(1)
			h(frame)
			return true
		}
	}
	// GRO merges only segments whose checksums were checked; its own check
	// fails every segment at this gVisor version (PacketData.ChecksumAtOffset
	// ignores the consumed Ethernet header), so the endpoint's check is the
	// one that counts. A checked packet loses the Ethernet padding after
	// its IP total length (a short frame is padded to 60 bytes): GRO would
	// take the padding for payload.
	tcp := false
	if header.Ethernet(frame).Type() == header.IPv4ProtocolNumber {
		n, proto, err := checkIPv4(frame[header.EthernetMinimumSize:])
		switch err {
		case nil:
		case errFragment:
			e.rxFrags.Add(1)
			return false
		case errChecksum:
			e.rxChecksum.Add(1)
			return false
		default:
			e.rxMalformed.Add(1)
			return false
		}
		frame = frame[:header.EthernetMinimumSize+n]
		tcp = proto == header.TCPProtocolNumber
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	if !e.ParseHeader(pkt) {
		return false
	}
	eth := header.Ethernet(pkt.LinkHeader().Slice())
	if eth.Type() == EtherTypeProbe {
		e.countProbe(len(frame))
		return false
	}
	dst := eth.DestinationAddress()
	switch {
	case dst == header.EthernetBroadcastAddress:
		pkt.PktType = tcpip.PacketBroadcast
	case header.IsMulticastEthernetAddress(dst):
		pkt.PktType = tcpip.PacketMulticast
	case dst == e.LinkAddress():
		pkt.PktType = tcpip.PacketHost
	default:
		pkt.PktType = tcpip.PacketOtherHost
	}
	pkt.NetworkProtocolNumber = eth.Type()
	pkt.RXChecksumValidated = tcp
	if !tcp || e.noGRO.Load() {
		g.Dispatcher.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
		return false
	}
	g.Enqueue(pkt)
	return false
}

var (
	errMalformed = errors.New("link: malformed IPv4 packet")
	errChecksum  = errors.New("link: wrong IPv4, TCP or UDP checksum")
	errFragment  = errors.New("link: IPv4 fragment of TCP or UDP")
)

// checkIPv4 checks a received IPv4 packet as the stack would have before
// it trusted the capability: a well-formed header (RFC 791) whose checksum
// holds and, for TCP and UDP, the checksum over the pseudo-header and the
// segment (RFC 9293 section 3.1, RFC 768; a UDP checksum of zero means
// none was sent). It returns the IP total length and the protocol.
func checkIPv4(b []byte) (int, tcpip.TransportProtocolNumber, error) {
	if len(b) < header.IPv4MinimumSize {
		return 0, 0, errMalformed
	}
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) {
		return 0, 0, errMalformed
	}
	if !ip.IsChecksumValid() {
		return 0, 0, errChecksum
	}
	total, proto := int(ip.TotalLength()), ip.TransportProtocol()
	if proto != header.TCPProtocolNumber && proto != header.UDPProtocolNumber {
		return total, proto, nil // ICMP is checked by the stack in any case
	}
	if ip.More() || ip.FragmentOffset() != 0 {
		return 0, 0, errFragment
	}
	seg := b[ip.HeaderLength():total]
	if proto == header.UDPProtocolNumber {
		if len(seg) < header.UDPMinimumSize {
			return 0, 0, errMalformed
		}
		udp := header.UDP(seg)
		n := int(udp.Length())
		if n < header.UDPMinimumSize || n > len(seg) {
			return 0, 0, errMalformed
		}
		if udp.Checksum() == 0 {
			return total, proto, nil
		}
		seg = seg[:n]
	} else if len(seg) < header.TCPMinimumSize {
		return 0, 0, errMalformed
	} else if off := int(header.TCP(seg).DataOffset()); off < header.TCPMinimumSize || off > len(seg) {
		return 0, 0, errMalformed
	}
	xsum := header.PseudoHeaderChecksum(proto, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(seg)))
	if checksum.Checksum(seg, xsum) != 0xffff {
		return 0, 0, errChecksum
	}
	return total, proto, nil
}

// WritePackets transmits each packet as one frame. A full ring is waited
// out for up to txWait; a frame that still cannot go is dropped and
// counted (the transport recovers it), and the count of frames handed to
// the NIC is returned.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	sent := 0
	list := pkts.AsSlice()
	for i, pkt := range list {
		frame := e.txFrame[:0]
		for _, s := range pkt.AsSlices() {
			frame = append(frame, s...)
		}
		e.txFrame = frame
		var err error
		if g := pkt.GSOOptions; g.Type != stack.GSONone && g.Type != stack.GSOGvisor {
			err = e.transmitHostGSO(frame, g, i < len(list)-1)
		} else {
			err = e.transmit(frame, i < len(list)-1)
		}
		if err != nil {
			e.txDropped.Add(1)
			if errors.Is(err, nic.ErrClosed) {
				return sent, &tcpip.ErrClosedForSend{}
			}
			continue
		}
		sent++
	}
	return sent, nil
}

// transmitHostGSO sends a packet TCP made for the NIC's segmentation
// (stack.HostGSOSupported). Its TCP checksum field holds only the
// pseudo-header's sum (Linux's CHECKSUM_PARTIAL); the NIC cuts a packet
// longer than a frame into frames and makes each one's checksums, and a
// packet that fits in one frame gets its checksum here.
func (e *Endpoint) transmitHostGSO(frame []byte, g stack.GSO, more bool) error {
	if len(frame) > e.nic.MTU()+header.EthernetMinimumSize {
		s, ok := e.nic.(nic.Segmenter)
		if !ok || s.MaxSegment() == 0 {
			return fmt.Errorf("link: %d-byte segment for a NIC that does not segment: %w", len(frame), nic.ErrFrameSize)
		}
		return e.retryFull(func() error { return s.TransmitSegment(frame, int(g.MSS)) })
	}
	if g.NeedsCsum {
		start := header.EthernetMinimumSize + int(g.L3HdrLen)
		field := start + int(g.CsumOffset)
		if field+2 > len(frame) {
			return fmt.Errorf("link: checksum at %d in a %d-byte frame: %w", field, len(frame), nic.ErrFrameSize)
		}
		// The field holds the pseudo-header's sum, so the sum over the
		// segment with it is the whole sum.
		binary.BigEndian.PutUint16(frame[field:], ^checksum.Checksum(frame[start:], 0))
	}
	return e.transmit(frame, more)
}

// transmit hands one frame to the NIC, waiting out a full ring for up to
// txWait. With more, further frames follow at once: a nic.Batcher may
// then leave the doorbell to the burst's last frame (a GSO segment is cut
// into up to 44 frames of a standard MTU).
func (e *Endpoint) transmit(frame []byte, more bool) error {
	if b, ok := e.nic.(nic.Batcher); ok {
		return e.retryFull(func() error { return b.TransmitMore(frame, more) })
	}
	return e.retryFull(func() error { return e.nic.Transmit(frame) })
}

// retryFull calls send until it does not fail with nic.ErrQueueFull,
// waiting for TxReady between calls, for up to txWait in all.
func (e *Endpoint) retryFull(send func() error) error {
	var timer *time.Timer
	for {
		err := send()
		if !errors.Is(err, nic.ErrQueueFull) {
			return err
		}
		e.txWaits.Add(1)
		if timer == nil {
			timer = time.NewTimer(txWait)
			defer timer.Stop()
		}
		select {
		case <-e.nic.TxReady():
		case <-timer.C:
			return err
		}
	}
}

// HandleEtherType hands every received frame of EtherType t (the
// Ethernet header included; the frame becomes h's) to h on the receive
// goroutine instead of the stack, or stops doing so if h is nil. It is
// how a transport beside IP (net/ethstream) shares the NIC with the
// stack. h must not block: frames behind it wait. The frame is h's: it
// may hand it back to the NIC with Raw.Recycle when done with it.
func (e *Endpoint) HandleEtherType(t uint16, h func(frame []byte)) {
	e.mu.Lock() // serializes the copy-on-write updates
	defer e.mu.Unlock()
	m := map[uint16]func([]byte){}
	if old := e.handlers.Load(); old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	if h == nil {
		delete(m, t)
	} else {
		m[t] = h
	}
	e.handlers.Store(&m)
}

// Raw sends frames built by a transport beside IP (net/ethstream's Wire).
type Raw struct{ e *Endpoint }

// Raw returns the endpoint's raw sender.
func (e *Endpoint) Raw() Raw { return Raw{e} }

// MTU is the largest payload after the Ethernet header.
func (r Raw) MTU() int { return r.e.nic.MTU() }

// Recycle hands a received frame back to the NIC (if it recycles
// frames) once its handler is done with it: net/ethstream's Recycler.
func (r Raw) Recycle(frame []byte) {
	if r.e.recycler != nil {
		r.e.recycler.Recycle(frame)
	}
}

// SendFrame transmits one whole Ethernet frame, waiting out a full ring
// for up to txWait as the stack's packets do; with more, the doorbell may
// wait for the burst's last frame. The frames go out in turn with the
// stack's (one writer at a time).
func (r Raw) SendFrame(frame []byte, more bool) error {
	e := r.e
	e.txMu.Lock()
	defer e.txMu.Unlock()
	if err := e.transmit(frame, more); err != nil {
		e.txDropped.Add(1)
		return err
	}
	return nil
}

func (e *Endpoint) countProbe(n int) {
	now := time.Now()
	e.probeMu.Lock()
	if e.probe.Frames == 0 {
		e.probe.First = now
	}
	e.probe.Frames++
	e.probe.Bytes += uint64(n)
	e.probe.Last = now
	e.probeMu.Unlock()
}

// TakeProbe returns the probe frames counted so far and resets the count.
func (e *Endpoint) TakeProbe() Probe {
	e.probeMu.Lock()
	defer e.probeMu.Unlock()
	p := e.probe
	e.probe = Probe{}
	return p
}

// SendProbe transmits frames probe frames of the NIC's full size to dst,
// waiting out a full ring as WritePackets does, and returns the bytes
// handed to the NIC.
func (e *Endpoint) SendProbe(dst tcpip.LinkAddress, frames int) (int64, error) {
	f := make([]byte, e.nic.MTU()+header.EthernetMinimumSize)
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: e.LinkAddress(), DstAddr: dst, Type: EtherTypeProbe})
	e.txMu.Lock()
	defer e.txMu.Unlock()
	var sent int64
	for i := 0; i < frames; i++ {
		binary.BigEndian.PutUint32(f[header.EthernetMinimumSize:], uint32(i))
		if err := e.transmit(f, i < frames-1); err != nil {
			if errors.Is(err, nic.ErrQueueFull) {
				continue
			}
			return sent, fmt.Errorf("link: probe frame %d: %w", i, err)
		}
		sent += int64(len(f))
	}
	return sent, nil
}

// Announce broadcasts an ARP announcement of ip (RFC 5227 section 3: an
// ARP request whose sender and target protocol addresses are both ip),
// so that peers and learning switches know this MAC at once. Bochs's
// bxhub delivers unicast frames only to ports whose MAC it has seen in a
// broadcast: a machine that only answers ARP requests is never learnt
// there, and unicast traffic to it is dropped.
func (e *Endpoint) Announce(ip [4]byte) error {
	f := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: e.LinkAddress(), DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(f[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), e.LinkAddress())
	copy(a.ProtocolAddressSender(), ip[:])
	copy(a.ProtocolAddressTarget(), ip[:])
	e.txMu.Lock()
	defer e.txMu.Unlock()
	if err := e.transmit(f, false); err != nil {
		return fmt.Errorf("link: ARP announcement of %d.%d.%d.%d: %w", ip[0], ip[1], ip[2], ip[3], err)
	}
	return nil
}
