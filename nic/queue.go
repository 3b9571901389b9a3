package nic

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Stats are the counters a driver keeps, updated atomically from its
// interrupt goroutine and its callers alike.
type Stats struct {
	TxFrames, TxBytes, RxFrames, RxBytes atomic.Uint64
	TxQueueFull, RxDropped, RxErrors     atomic.Uint64
	Interrupts, Stalls                   atomic.Uint64
}

// Snapshot returns the counters' current values.
func (s *Stats) Snapshot() Counters {
	return Counters{
		TxFrames: s.TxFrames.Load(), TxBytes: s.TxBytes.Load(),
		RxFrames: s.RxFrames.Load(), RxBytes: s.RxBytes.Load(),
		TxQueueFull: s.TxQueueFull.Load(), RxDropped: s.RxDropped.Load(),
		RxErrors: s.RxErrors.Load(), Interrupts: s.Interrupts.Load(),
		Stalls: s.Stalls.Load(),
	}
}

// CountTx records one transmitted frame of n bytes.
func (s *Stats) CountTx(n int) {
	s.TxFrames.Add(1)
	s.TxBytes.Add(uint64(n))
}

// RxQueue is the bounded queue between a driver's interrupt goroutine and
// Receive: when the stack does not keep up, new frames are dropped and
// counted instead of buffered without bound.
type RxQueue struct {
	ch     chan []byte
	closed chan struct{}
	once   atomic.Bool
	stats  *Stats
	// free holds buffers handed back by Recycle, each of capacity at
	// least frameCap, for Copy to take before it allocates.
	free     chan []byte
	frameCap int
}

// recycleBytes bounds the buffers a queue keeps for reuse: enough for the
// FT link's ether stream to hand back a whole receive window (4 MiB) at
// once, as it does when its reader catches up.
const recycleBytes = 5 << 20

// NewRxQueue makes a queue holding at most n frames that counts into s,
// for frames of up to frameCap bytes; with frameCap 0 it keeps no
// buffers for reuse (Recycle does nothing).
func NewRxQueue(n, frameCap int, s *Stats) *RxQueue {
	q := &RxQueue{ch: make(chan []byte, n), closed: make(chan struct{}), stats: s, frameCap: frameCap}
	if frameCap > 0 {
		q.free = make(chan []byte, max(64, recycleBytes/frameCap))
	}
	return q
}

// Copy returns a copy of a received frame, in a buffer handed back by
// Recycle if one is free, else in a new one of the queue's frame size. A
// driver copies each frame out of its DMA buffer with it.
func (q *RxQueue) Copy(src []byte) []byte {
	select {
	case b := <-q.free:
		if cap(b) >= len(src) {
			return append(b[:0], src...)
		}
	default:
	}
	b := make([]byte, len(src), max(len(src), q.frameCap))
	copy(b, src)
	return b
}

// Recycle hands back a frame Pop returned, once nothing uses it or any
// slice of it any more, for Copy to reuse. A frame whose capacity is
// below the queue's frame size (a slice that does not start where the
// frame did) is left to the garbage collector, as is every frame once
// the queue keeps recycleBytes of them.
func (q *RxQueue) Recycle(frame []byte) {
	if q.free == nil || cap(frame) < q.frameCap {
		return
	}
	select {
	case q.free <- frame[:0]:
	default:
	}
}

// Push queues a received frame without blocking. A full queue drops the
// frame and counts it in RxDropped; a queued frame counts in RxFrames.
func (q *RxQueue) Push(frame []byte) bool {
	// Counted before the frame is visible, so a reader that has the frame
	// also sees it counted.
	n := uint64(len(frame))
	q.stats.RxFrames.Add(1)
	q.stats.RxBytes.Add(n)
	select {
	case q.ch <- frame:
		return true
	default:
		q.stats.RxFrames.Add(^uint64(0))
		q.stats.RxBytes.Add(-n)
		q.stats.RxDropped.Add(1)
		return false
	}
}

// Pop blocks until a frame is queued, ctx is done or the queue is closed.
// Frames queued before Close are still delivered.
func (q *RxQueue) Pop(ctx context.Context) ([]byte, error) {
	select {
	case f := <-q.ch:
		return f, nil
	default:
	}
	select {
	case f := <-q.ch:
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-q.closed:
		return nil, ErrClosed
	}
}

// Len returns the number of queued frames.
func (q *RxQueue) Len() int { return len(q.ch) }

// Close wakes every Pop with ErrClosed; it may be called more than once.
func (q *RxQueue) Close() {
	if q.once.CompareAndSwap(false, true) {
		close(q.closed)
	}
}

// TxSignal is the TxReady channel of a driver: Notify never blocks and
// coalesces wake-ups, so a waiter sees at most one pending value.
type TxSignal chan struct{}

// NewTxSignal makes a TxSignal.
func NewTxSignal() TxSignal { return make(TxSignal, 1) }

// Notify tells a waiter that ring space was freed.
func (t TxSignal) Notify() {
	select {
	case t <- struct{}{}:
	default:
	}
}

// CheckFrame returns ErrFrameSize unless frame is a whole Ethernet frame
// (header included, no FCS) for an interface of the given MTU.
func CheckFrame(frame []byte, mtu int) error {
	if len(frame) < HeaderLen || len(frame) > mtu+HeaderLen {
		return ErrFrameSize
	}
	return nil
}

// HeaderLen is the Ethernet header's length (destination, source, type).
const HeaderLen = 14

// TransmitWait transmits frame, waiting on n.TxReady while the ring is
// full, until ctx is done. It retries every millisecond even without a
// signal, so a lost wake-up costs latency, never a hang.
func TransmitWait(ctx context.Context, n NIC, frame []byte) error {
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	for {
		err := n.Transmit(frame)
		if !errors.Is(err, ErrQueueFull) {
			return err
		}
		t.Reset(time.Millisecond)
		select {
		case <-n.TxReady():
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WatchdogPeriod is how often a driver's watchdog looks, by default, for
// work that no interrupt reported.
const WatchdogPeriod = 20 * time.Millisecond

// StartWatchdog starts a goroutine that calls service whenever pending
// reports the same unfinished work (same progress marker) on two ticks
// period apart, counting a stall, until stop is closed. A driver runs it
// beside its interrupt goroutine, so a lost interrupt costs latency,
// never a hung ring. A period <= 0 disables it (tests that hold
// interrupts off on purpose). The returned channel is closed once the
// goroutine has ended: pending reads the rings, so a driver's Close
// waits for it before the rings' memory is freed.
func StartWatchdog(s *Stats, period time.Duration, stop <-chan struct{}, pending func() (marker uint64, ok bool), service func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if period <= 0 {
			return
		}
		t := time.NewTicker(period)
		defer t.Stop()
		var last uint64
		was := false
		for {
			select {
			case <-t.C:
			case <-stop:
				return
			}
			m, ok := pending()
			if ok && was && m == last {
				s.Stalls.Add(1)
				service()
				m, ok = pending()
			}
			last, was = m, ok
		}
	}()
	return done
}
