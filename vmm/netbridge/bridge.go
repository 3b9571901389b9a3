// Package netbridge joins the guest's virtual NIC to one of doppel's
// physical NICs, as a two-port Ethernet bridge with the guest on one
// port: frames the guest transmits go out on the NIC as they are, frames
// the NIC receives for the guest (its own MAC, broadcast, multicast) go to
// the virtual NIC. The guest keeps its own MAC address; the physical NIC
// must then receive frames for it, which a virtio-net NIC does by default
// (it filters nothing) and an e1000 only in promiscuous mode.
//
// Nothing here blocks the guest: Transmit (a virtionet.Backend, called at
// a VM exit with the device lock held) and Send (vmguest.NIC, the release
// side of output commit) only queue the frame in a bounded queue that one
// goroutine drains to the NIC, waiting on the NIC's TxReady when its ring
// is full; a frame that finds the queue full is dropped and counted, as a
// switch port drops under congestion (TCP in the guest retransmits). The
// receive goroutine hands frames to a Deliver function, which the machine
// points at the device under its lock.
//
// Failover: Announce sends a gratuitous ARP (RFC 5227 section 3, an ARP
// request for the guest's own address with the target address equal to
// the sender's) from the guest's MAC, so switches on the outside network
// learn the guest's new port and neighbours refresh their caches.
package netbridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/doppel-ft/doppel/nic"
)

// DefaultTxQueue is the transmit queue's length in frames (the virtio
// ring's default size: the guest cannot have more in flight).
const DefaultTxQueue = 256

// Config of a Bridge.
type Config struct {
	// NIC is the physical port, used raw: nothing else may Receive on it.
	NIC nic.NIC
	// MAC is the guest's address: received unicast frames for any other
	// address are not delivered.
	MAC nic.MAC
	// TxQueue bounds the frames waiting for the NIC; DefaultTxQueue if 0.
	TxQueue int
}

// Stats are the bridge's counters.
type Stats struct {
	TxFrames      uint64 // handed to the NIC
	TxDroppedFull uint64 // the transmit queue was full
	TxErrors      uint64 // the NIC refused the frame (size, link down, closed)
	RxFrames      uint64 // delivered to the guest's device
	RxNotForGuest uint64 // unicast for another MAC
	RxRefused     uint64 // the device did not take it (held queue full, not ready)
	RxNoGuest     uint64 // no guest attached (before start, during a rebuild)
}

// Bridge is one guest port bridged to one NIC. Start it once; Close ends
// its goroutines (the NIC stays open).
type Bridge struct {
	nic nic.NIC
	mac nic.MAC
	txq chan []byte

	deliver atomic.Pointer[func([]byte) bool]

	txFrames, txDropped, txErrors            atomic.Uint64
	rxFrames, rxOther, rxRefused, rxNoTarget atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New returns a bridge that is not running yet.
func New(c Config) (*Bridge, error) {
	if c.NIC == nil {
		return nil, errors.New("netbridge: no NIC")
	}
	if c.MAC[0]&1 != 0 || c.MAC == (nic.MAC{}) {
		return nil, fmt.Errorf("netbridge: guest MAC %s is not a unicast address", macString(c.MAC))
	}
	if c.TxQueue <= 0 {
		c.TxQueue = DefaultTxQueue
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Bridge{nic: c.NIC, mac: c.MAC, txq: make(chan []byte, c.TxQueue), ctx: ctx, cancel: cancel}, nil
}

// SetDeliver sets where received frames for the guest go (nil: dropped
// and counted in RxNoGuest). deliver reports whether the device took the
// frame; it runs on the bridge's receive goroutine and may lock.
func (b *Bridge) SetDeliver(deliver func(frame []byte) bool) {
	if deliver == nil {
		b.deliver.Store(nil)
		return
	}
	b.deliver.Store(&deliver)
}

// Start runs the transmit and receive goroutines (once).
func (b *Bridge) Start() {
	b.once.Do(func() {
		b.wg.Add(2)
		go b.transmitLoop()
		go b.receiveLoop()
	})
}

// Close stops the goroutines and waits for them; frames still queued are
// dropped. The NIC is not closed.
func (b *Bridge) Close() error {
	b.cancel()
	b.wg.Wait()
	return nil
}

// MAC is the guest's address.
func (b *Bridge) MAC() nic.MAC { return b.mac }

// NIC is the physical port.
func (b *Bridge) NIC() nic.NIC { return b.nic }

// Transmit implements virtionet.Backend: it queues the frame (which the
// device gives away) and returns at once; seq is not needed here.
func (b *Bridge) Transmit(seq uint64, frame []byte) { b.queue(frame) }

// Send implements vmguest.NIC (the release side of output commit): like
// Transmit, the frame is queued, or dropped and counted when the queue is
// full. It copies frame, which the caller may reuse.
func (b *Bridge) Send(frame []byte) error {
	if b.ctx.Err() != nil {
		return fmt.Errorf("netbridge: %w", nic.ErrClosed)
	}
	b.queue(append([]byte(nil), frame...))
	return nil
}

func (b *Bridge) queue(frame []byte) {
	select {
	case b.txq <- frame:
	default:
		b.txDropped.Add(1)
	}
}

// transmitLoop drains the queue to the NIC, waiting for ring space.
func (b *Bridge) transmitLoop() {
	defer b.wg.Done()
	for {
		var f []byte
		select {
		case f = <-b.txq:
		case <-b.ctx.Done():
			return
		}
		for {
			err := b.nic.Transmit(f)
			if err == nil {
				b.txFrames.Add(1)
				break
			}
			if !errors.Is(err, nic.ErrQueueFull) {
				b.txErrors.Add(1)
				break
			}
			select {
			case <-b.nic.TxReady():
			case <-b.ctx.Done():
				return
			}
		}
	}
}

// receiveLoop hands the guest's frames to the device.
func (b *Bridge) receiveLoop() {
	defer b.wg.Done()
	for {
		f, err := b.nic.Receive(b.ctx)
		if err != nil {
			return // closed, or the bridge is
		}
		if !b.forGuest(f) {
			b.rxOther.Add(1)
			continue
		}
		d := b.deliver.Load()
		switch {
		case d == nil:
			b.rxNoTarget.Add(1)
		case (*d)(f):
			b.rxFrames.Add(1)
		default:
			b.rxRefused.Add(1)
		}
	}
}

// forGuest: a frame whose destination is the guest's MAC, or a group
// address (broadcast, multicast: the I/G bit).
func (b *Bridge) forGuest(f []byte) bool {
	if len(f) < 14 {
		return false
	}
	return f[0]&1 != 0 || [6]byte(f[:6]) == b.mac
}

// Stats returns the counters.
func (b *Bridge) Stats() Stats {
	return Stats{
		TxFrames: b.txFrames.Load(), TxDroppedFull: b.txDropped.Load(), TxErrors: b.txErrors.Load(),
		RxFrames: b.rxFrames.Load(), RxNotForGuest: b.rxOther.Load(), RxRefused: b.rxRefused.Load(), RxNoGuest: b.rxNoTarget.Load(),
	}
}

// Announce queues a gratuitous ARP for ip from the guest's MAC, behind
// the frames already waiting.
func (b *Bridge) Announce(ip netip.Addr) error {
	f, err := GratuitousARP(b.mac, ip)
	if err != nil {
		return err
	}
	return b.Send(f)
}

// ARP over Ethernet (RFC 826): EtherType 0806h, hardware type 1, protocol
// type 0800h, lengths 6 and 4, operation 1 (request).
const (
	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	arpHWEthernet = 1
	arpOpRequest  = 1
	minFrameLen   = 60 // without the FCS: shorter frames are padded
)

// GratuitousARP returns the broadcast ARP request announcing that ip is
// at mac (RFC 5227 section 3: sender and target protocol address both
// ip, target hardware address zero), padded to the Ethernet minimum.
func GratuitousARP(mac nic.MAC, ip netip.Addr) ([]byte, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("netbridge: gratuitous ARP needs an IPv4 address, not %v", ip)
	}
	a := ip.As4()
	f := make([]byte, minFrameLen)
	copy(f[0:6], []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	copy(f[6:12], mac[:])
	put16 := func(off int, v uint16) { f[off], f[off+1] = byte(v>>8), byte(v) }
	put16(12, etherTypeARP)
	put16(14, arpHWEthernet)
	put16(16, etherTypeIPv4)
	f[18], f[19] = 6, 4
	put16(20, arpOpRequest)
	copy(f[22:28], mac[:]) // sender hardware address
	copy(f[28:32], a[:])   // sender protocol address
	// target hardware address 32:38 stays zero
	copy(f[38:42], a[:]) // target protocol address
	return f, nil
}

func macString(m nic.MAC) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}
