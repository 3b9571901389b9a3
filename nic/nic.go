// Package nic holds the interface every NIC driver of doppel offers to the
// network stack and the FT link, and the drivers themselves in
// sub-packages (e1000, virtio-net). A driver owns its descriptor rings and
// buffers in DMA memory and takes its interrupts on a goroutine; callers
// see only frames.
package nic

import (
	"context"
	"errors"
)

// Errors of Transmit and Receive.
var (
	// ErrQueueFull: the transmit ring is full; the caller backs off (or
	// waits with TransmitWait) instead of the driver buffering without
	// bound.
	ErrQueueFull = errors.New("nic: transmit queue full")
	// ErrLinkDown: the link is down; the frame was not sent.
	ErrLinkDown = errors.New("nic: link down")
	// ErrClosed: the device was closed.
	ErrClosed = errors.New("nic: closed")
	// ErrFrameSize: a frame shorter than 14 bytes or longer than MTU+14.
	ErrFrameSize = errors.New("nic: bad frame size")
)

// MAC is an Ethernet address.
type MAC [6]byte

// Counters are a NIC's statistics since it was opened.
type Counters struct {
	TxFrames, TxBytes, RxFrames, RxBytes uint64
	// TxQueueFull counts Transmit calls refused with ErrQueueFull.
	TxQueueFull uint64
	// RxDropped counts received frames dropped because the receive queue
	// was full (the stack did not keep up).
	RxDropped uint64
	// RxErrors counts frames the device or driver found bad (checksum,
	// runt, giant, error bits in the descriptor): dropped.
	RxErrors   uint64
	Interrupts uint64
	// Stalls counts times the driver's watchdog found finished work that
	// no interrupt had reported for a whole watchdog period (a lost or
	// very late interrupt); the watchdog then serviced the device.
	Stalls uint64
}

// NIC is one Ethernet interface. Its methods are safe for concurrent use.
type NIC interface {
	// Name is the interface name used in flags and reports (e.g. "e1000-0").
	Name() string
	MAC() MAC
	// MTU is the largest payload (without the 14-byte Ethernet header).
	MTU() int
	// LinkUp reports the link state.
	LinkUp() bool
	// Transmit queues one Ethernet frame (header included, no FCS). It
	// does not block: a full ring gives ErrQueueFull. The driver copies
	// frame before returning.
	Transmit(frame []byte) error
	// Receive blocks until a frame arrives, ctx is done or the NIC is
	// closed. The frame is the caller's (a Recycler takes it back once
	// the caller is done with it).
	Receive(ctx context.Context) ([]byte, error)
	// TxReady returns a channel that receives a value when transmit ring
	// space was freed after an ErrQueueFull.
	TxReady() <-chan struct{}
	Counters() Counters
	Close() error
}

// Recycler is a NIC whose received frames may be handed back once the
// receiver is done with them, for the driver to copy later frames into
// instead of allocating a buffer per frame. A receiving FT secondary
// took 50,000 frames a second, and their allocations alone made the Go
// runtime collect garbage eight times a second.
type Recycler interface {
	// Recycle hands back a frame Receive returned (the whole frame, not
	// a slice of it starting later). The caller must not touch it, or
	// any slice of it, afterwards. Recycling is optional: a frame never
	// handed back is collected as garbage.
	Recycle(frame []byte)
}

// Batcher is a NIC that can take a burst of frames with one doorbell
// (Linux's xmit_more). TransmitMore queues frame as Transmit does; while
// more is true it may leave telling the device (a register write: an
// uncached bus round trip, in an emulator an exit to the device model)
// to a later call. A call with more false, and any call that fails, tells
// the device of every frame queued, so a caller that waits for TxReady
// after ErrQueueFull, or stops at an error, leaves nothing unsent.
type Batcher interface {
	TransmitMore(frame []byte, more bool) error
}

// Segmenter is a NIC that cuts a large TCP segment into frames itself
// (TCP segmentation offload): one descriptor chain and one copy for up to
// 64 KiB, the headers and checksums of each frame made by the device.
type Segmenter interface {
	// MaxSegment is the longest packet TransmitSegment takes, its
	// Ethernet header included; 0 if the NIC does not segment (a feature
	// not offered or not negotiated).
	MaxSegment() int
	// TransmitSegment queues packet, an Ethernet frame holding one TCP
	// segment over IPv4 (its headers complete; the checksum fields may
	// hold anything), to go out as frames carrying mss bytes of its
	// payload each. It fails as Transmit does, and with ErrFrameSize for
	// a packet that is not TCP over IPv4 or is too long.
	TransmitSegment(packet []byte, mss int) error
}

// Describer is a NIC that can describe its rings' state (indices,
// interrupt mask, queued frames) in one line, for diagnosing a stalled
// link. Describe must not change the device's state.
type Describer interface {
	Describe() string
}
