// Package nictest provides Fake, a host-side nic.NIC for tests of the
// network stack and the FT link: two Fakes joined by Pair behave like two
// NICs on one cable, with a transmit ring that fills up (ErrQueueFull,
// then TxReady), a bounded receive queue that drops and counts, link state
// and the same size checks and counters as the drivers. CloseDuringTraffic
// is a check every driver's tests run on its Close.
package nictest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/doppel-ft/doppel/nic"
)

// Config sizes a Fake. Zero fields take the defaults in parentheses.
type Config struct {
	MTU     int // payload bytes (1500)
	TxRing  int // frames in flight on the wire per direction (64)
	RxQueue int // received frames waiting for Receive (256)
	// Manual keeps frames in the transmit ring until Deliver moves them,
	// so a test can fill the ring; otherwise a goroutine moves them at once.
	Manual bool
}

func (c *Config) defaults() {
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.TxRing == 0 {
		c.TxRing = 64
	}
	if c.RxQueue == 0 {
		c.RxQueue = 256
	}
}

// Fake is one end of a simulated Ethernet link.
type Fake struct {
	name  string
	mac   nic.MAC
	cfg   Config
	stats nic.Stats
	rx    *nic.RxQueue
	tx    chan []byte // the transmit ring
	ready nic.TxSignal
	link  atomic.Bool
	full  atomic.Bool // a Transmit was refused since the last drain
	peer  *Fake

	closeOnce sync.Once
	done      chan struct{}
}

// Pair returns two Fakes linked to each other, link up, named
// "fake-0"/"fake-1" with locally administered MACs 02:00:00:00:00:01/02.
func Pair(cfg Config) (*Fake, *Fake) {
	cfg.defaults()
	a, b := newFake(0, cfg), newFake(1, cfg)
	a.peer, b.peer = b, a
	if !cfg.Manual {
		go a.wire()
		go b.wire()
	}
	return a, b
}

func newFake(i int, cfg Config) *Fake {
	f := &Fake{
		name:  fmt.Sprintf("fake-%d", i),
		mac:   nic.MAC{0x02, 0, 0, 0, 0, byte(i + 1)},
		cfg:   cfg,
		tx:    make(chan []byte, cfg.TxRing),
		ready: nic.NewTxSignal(),
		done:  make(chan struct{}),
	}
	f.rx = nic.NewRxQueue(cfg.RxQueue, 0, &f.stats) // frames arrive as the peer's copies: no buffers kept for reuse
	f.link.Store(true)
	return f
}

// wire moves transmitted frames to the peer until f is closed.
func (f *Fake) wire() {
	for {
		select {
		case fr := <-f.tx:
			f.arrive(fr)
		case <-f.done:
			return
		}
	}
}

// arrive hands one frame from f's ring to the peer and frees its slot.
func (f *Fake) arrive(fr []byte) {
	if f.link.Load() && f.peer.link.Load() {
		f.peer.Inject(fr)
	}
	if f.full.CompareAndSwap(true, false) {
		f.ready.Notify()
	}
}

// Deliver moves up to n frames from the transmit ring to the peer (Manual
// mode) and returns how many it moved.
func (f *Fake) Deliver(n int) int {
	for i := 0; i < n; i++ {
		select {
		case fr := <-f.tx:
			f.arrive(fr)
		default:
			return i
		}
	}
	return n
}

// Inject makes frame arrive at f as if from the wire. Runt and giant
// frames are counted in RxErrors and dropped, as a driver does.
func (f *Fake) Inject(frame []byte) {
	if nic.CheckFrame(frame, f.cfg.MTU) != nil {
		f.stats.RxErrors.Add(1)
		return
	}
	f.stats.Interrupts.Add(1)
	f.rx.Push(frame)
}

// SetLink sets the link state of f (both ends see a cable as down if
// either end is down).
func (f *Fake) SetLink(up bool) { f.link.Store(up) }

// Name implements nic.NIC.
func (f *Fake) Name() string { return f.name }

// MAC implements nic.NIC.
func (f *Fake) MAC() nic.MAC { return f.mac }

// MTU implements nic.NIC.
func (f *Fake) MTU() int { return f.cfg.MTU }

// LinkUp implements nic.NIC.
func (f *Fake) LinkUp() bool { return f.link.Load() && f.peer.link.Load() }

// Transmit implements nic.NIC.
func (f *Fake) Transmit(frame []byte) error {
	select {
	case <-f.done:
		return nic.ErrClosed
	default:
	}
	if err := nic.CheckFrame(frame, f.cfg.MTU); err != nil {
		return err
	}
	if !f.LinkUp() {
		return nic.ErrLinkDown
	}
	fr := append([]byte(nil), frame...)
	f.full.Store(true) // before the attempt, so a drain racing with it signals
	select {
	case f.tx <- fr:
		f.stats.CountTx(len(fr))
		return nil
	default:
		f.stats.TxQueueFull.Add(1)
		return nic.ErrQueueFull
	}
}

// Receive implements nic.NIC.
func (f *Fake) Receive(ctx context.Context) ([]byte, error) { return f.rx.Pop(ctx) }

// TxReady implements nic.NIC.
func (f *Fake) TxReady() <-chan struct{} { return f.ready }

// Counters implements nic.NIC.
func (f *Fake) Counters() nic.Counters { return f.stats.Snapshot() }

// Close implements nic.NIC.
func (f *Fake) Close() error {
	f.closeOnce.Do(func() {
		close(f.done)
		f.rx.Close()
	})
	return nil
}

var _ nic.NIC = (*Fake)(nil)
