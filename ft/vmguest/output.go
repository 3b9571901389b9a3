package vmguest

import (
	"fmt"
	"io"
	"sync"
)

// Output is the producing side of output commit: the guest's serial
// console (an io.Writer for uart.New) and its NIC's transmit side (a
// virtionet.Backend) both become records of one stream handed to the
// engine (ftmirror.Primary.Output), which holds them until the checkpoint
// that produced them is acknowledged. Nothing written here reaches the
// outside world directly: that is the whole point.
type Output struct {
	mu      sync.Mutex
	emit    func([]byte)
	emitted uint64
	err     error
}

// NewOutput returns an Output that hands records to emit (nil: set later
// with SetEmit; output before that is an error, not dropped silently).
func NewOutput(emit func([]byte)) *Output { return &Output{emit: emit} }

// SetEmit sets where records go (the promoted secondary's new Primary).
func (o *Output) SetEmit(emit func([]byte)) {
	o.mu.Lock()
	o.emit = emit
	o.mu.Unlock()
}

// Write implements io.Writer for the UART: the bytes become serial
// records. It never blocks on the outside world (it is called at a VM
// exit).
func (o *Output) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if err := o.put(AppendSerial(nil, b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Transmit implements virtionet.Backend: the frame becomes a frame record
// carrying its sequence number. Backend.Transmit cannot fail, so an
// oversized frame is remembered in Err (the device bounds frames far
// below the limit, so this means a bug, not a guest).
func (o *Output) Transmit(seq uint64, frame []byte) {
	rec, err := AppendFrame(nil, seq, frame)
	if err == nil {
		err = o.put(rec)
	}
	if err != nil {
		o.mu.Lock()
		if o.err == nil {
			o.err = err
		}
		o.mu.Unlock()
	}
}

// put hands one or more whole records to the engine under the lock, so
// records of concurrent vCPUs never interleave in the stream.
func (o *Output) put(rec []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.emit == nil {
		err := fmt.Errorf("vmguest: guest output of %d bytes with no engine attached", len(rec))
		if o.err == nil {
			o.err = err
		}
		return err
	}
	o.emit(rec)
	o.emitted += uint64(len(rec))
	return nil
}

// Emitted is the number of stream bytes handed to the engine.
func (o *Output) Emitted() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.emitted
}

// Err is the first output that could not be put in the stream.
func (o *Output) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// NIC is the outside end of the virtual NIC: the physical port.
type NIC interface {
	Send(frame []byte) error
}

// Splitter is the release side: an ftmirror.OutputSink that turns the
// released stream back into console bytes and NIC frames, in order. It
// takes each byte exactly once at the next offset (a gap or a repeat is an
// error, never skipped or re-sent) and checks that frame sequence numbers
// follow one another, so a lost or duplicated frame is caught here rather
// than on the wire.
type Splitter struct {
	mu      sync.Mutex
	console io.Writer
	nic     NIC
	next    uint64
	lastSeq uint64
	p       Parser
}

// NewSplitter returns a splitter whose stream stands at offset, a record
// boundary, after the frame numbered lastSeq (0: none yet).
func NewSplitter(console io.Writer, nic NIC, offset, lastSeq uint64) *Splitter {
	return &Splitter{console: console, nic: nic, next: offset, lastSeq: lastSeq}
}

// Release implements ftmirror.OutputSink.
func (s *Splitter) Release(off uint64, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off != s.next {
		return fmt.Errorf("vmguest: release at offset %d, stream is at %d", off, s.next)
	}
	err := s.p.Feed(b, func(r Record) error {
		switch r.Kind {
		case KindSerial:
			if _, err := s.console.Write(r.Data); err != nil {
				return fmt.Errorf("vmguest: console: %w", err)
			}
		case KindFrame:
			if s.lastSeq != 0 && r.Seq != s.lastSeq+1 {
				return fmt.Errorf("%w: frame %d after frame %d", ErrBadRecord, r.Seq, s.lastSeq)
			}
			if err := s.nic.Send(r.Data); err != nil {
				return fmt.Errorf("vmguest: nic: frame %d: %w", r.Seq, err)
			}
			s.lastSeq = r.Seq
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("vmguest: release at %d: %w", off, err)
	}
	s.next += uint64(len(b))
	return nil
}

// Offset is the stream position released so far.
func (s *Splitter) Offset() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// LastSeq is the last frame sent.
func (s *Splitter) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq
}
