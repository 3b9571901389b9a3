// Package irq delivers a device's interrupts to a driver goroutine: the
// boot layer's /dev/irq/<n> (boot/CONTRACT.md: read blocks until the line
// fired, the line stays masked until then, so a level-triggered PCI INTx
// cannot storm), a poll timer where a device has no usable line, and a
// channel-backed Line for host tests of drivers against device models.
package irq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrClosed is returned by Wait after Close.
var ErrClosed = errors.New("irq: closed")

// Line is one interrupt source.
type Line interface {
	// Wait blocks until the interrupt fired since the previous Wait and
	// returns how often (at least 1; a poll line returns 1 each period).
	Wait() (uint64, error)
	// Close makes Wait return ErrClosed (a /dev/irq read already blocked
	// returns at the next interrupt).
	Close() error
	String() string
}

// File is /dev/irq/<n>: ISA IRQ n (through the MADT overrides) or, for
// n >= 16, GSI n, level-triggered, active low.
type File struct {
	n      int
	f      *os.File
	mu     sync.Mutex
	closed bool
}

// Open opens /dev/irq/<n>.
func Open(n int) (*File, error) {
	f, err := os.Open(fmt.Sprintf("/dev/irq/%d", n))
	if err != nil {
		return nil, fmt.Errorf("irq: %w", err)
	}
	return &File{n: n, f: f}, nil
}

// Wait implements Line.
func (l *File) Wait() (uint64, error) {
	var b [8]byte
	if _, err := l.f.Read(b[:]); err != nil {
		return 0, fmt.Errorf("irq %d: %w", l.n, err)
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// Close implements Line. The descriptor stays open: closing it under a
// blocked read is not something the layer supports; a closed File is
// simply ignored from its next interrupt on.
func (l *File) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return nil
}

func (l *File) String() string { return fmt.Sprintf("irq %d", l.n) }

// Poll is a Line that fires every Interval: for devices without a working
// interrupt, at the cost of latency and CPU.
type Poll struct {
	Interval time.Duration
	once     sync.Once
	done     chan struct{}
}

// NewPoll returns a poll line of the given period.
func NewPoll(d time.Duration) *Poll { return &Poll{Interval: d, done: make(chan struct{})} }

// Wait implements Line.
func (p *Poll) Wait() (uint64, error) {
	select {
	case <-time.After(p.Interval):
		return 1, nil
	case <-p.done:
		return 0, ErrClosed
	}
}

// Close implements Line.
func (p *Poll) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *Poll) String() string { return fmt.Sprintf("poll every %v", p.Interval) }

// Chan is a Line a test (or a device model) raises with Fire.
type Chan struct {
	mu     sync.Mutex
	count  uint64
	wake   chan struct{}
	closed bool
}

// NewChan returns a Chan line.
func NewChan() *Chan { return &Chan{wake: make(chan struct{}, 1)} }

// Fire raises the interrupt once.
func (c *Chan) Fire() {
	c.mu.Lock()
	c.count++
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Wait implements Line.
func (c *Chan) Wait() (uint64, error) {
	for {
		c.mu.Lock()
		n, closed := c.count, c.closed
		c.count = 0
		c.mu.Unlock()
		if closed {
			return 0, ErrClosed
		}
		if n > 0 {
			return n, nil
		}
		<-c.wake
	}
}

// Close implements Line.
func (c *Chan) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

func (c *Chan) String() string { return "test line" }

// shared holds one reader per /dev/irq line: PCI INTx lines are shared
// (two NICs on IRQ 11 is the norm under QEMU), but the layer keeps one
// count per line, which the first read takes. The reader hands each
// interrupt to every subscriber and reads the line again (which unmasks
// it) only after every subscriber has come back to Wait, that is, after
// each driver has read its cause register and so lowered its part of the
// level-triggered line. Reading earlier would take the still-asserted
// line again at once and spin the reader instead of running the drivers.
var shared struct {
	mu    sync.Mutex
	lines map[int]*sharedLine
}

type sharedLine struct {
	f    *File
	mu   sync.Mutex
	subs []*subscriber
}

// subscriber is one driver's view of a shared line. Its Wait is called
// from one goroutine only (the driver's interrupt goroutine).
type subscriber struct {
	n       int
	fire    chan uint64   // one interrupt handed over
	ack     chan struct{} // the driver is done with it
	done    chan struct{} // closed by Close
	closed  sync.Once
	pending bool // an interrupt was handed over and not yet acknowledged
}

// Wait implements Line: it acknowledges the previous interrupt, then
// waits for the next.
func (s *subscriber) Wait() (uint64, error) {
	if s.pending {
		s.pending = false
		s.ack <- struct{}{}
	}
	select {
	case c := <-s.fire:
		s.pending = true
		return c, nil
	case <-s.done:
		return 0, ErrClosed
	}
}

// Close implements Line.
func (s *subscriber) Close() error {
	s.closed.Do(func() { close(s.done) })
	return nil
}

func (s *subscriber) String() string { return fmt.Sprintf("irq %d", s.n) }

// OpenShared subscribes to /dev/irq/<n>, opening it on first use.
func OpenShared(n int) (Line, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.lines == nil {
		shared.lines = map[int]*sharedLine{}
	}
	l, ok := shared.lines[n]
	if !ok {
		f, err := Open(n)
		if err != nil {
			return nil, err
		}
		l = &sharedLine{f: f}
		shared.lines[n] = l
		go l.run()
	}
	s := &subscriber{n: n, fire: make(chan uint64, 1), ack: make(chan struct{}, 1), done: make(chan struct{})}
	l.mu.Lock()
	l.subs = append(l.subs, s)
	l.mu.Unlock()
	return s, nil
}

func (l *sharedLine) run() {
	for {
		c, err := l.f.Wait()
		if err != nil {
			return
		}
		l.mu.Lock()
		subs := l.subs
		l.mu.Unlock()
		fan(subs, c)
	}
}

// fan hands interrupt count c to every open subscriber and waits until
// each has acknowledged it (or closed).
func fan(subs []*subscriber, c uint64) {
	for _, s := range subs {
		select {
		case s.fire <- c:
		case <-s.done:
		}
	}
	for _, s := range subs {
		select {
		case <-s.ack:
		case <-s.done:
		}
	}
}

// MSI lines of the boot layer (boot/CONTRACT.md, /dev/msi/<k>): line k is
// vector MSIVector0+k on CPU 0's local APIC.
const (
	MSIVector0 = 0x60
	NumMSI     = 16
)

var msiNext struct {
	mu sync.Mutex
	k  int
}

// MSI is an allocated MSI line: the fd to wait on and the vector the
// device must send.
type MSI struct {
	*File
	Vector uint8
}

func (m *MSI) String() string { return fmt.Sprintf("msi vector %#x", m.Vector) }

// AllocMSI takes the next free MSI line of the layer.
func AllocMSI() (*MSI, error) {
	msiNext.mu.Lock()
	defer msiNext.mu.Unlock()
	if msiNext.k >= NumMSI {
		return nil, fmt.Errorf("irq: all %d MSI lines in use", NumMSI)
	}
	f, err := os.Open(fmt.Sprintf("/dev/msi/%d", msiNext.k))
	if err != nil {
		return nil, fmt.Errorf("irq: %w", err)
	}
	m := &MSI{File: &File{n: MSIVector0 + msiNext.k, f: f}, Vector: uint8(MSIVector0 + msiNext.k)}
	msiNext.k++
	return m, nil
}
