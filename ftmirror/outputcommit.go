package ftmirror

import (
	"sync"
	"time"
)

// outputBuffer holds guest output until the epoch that produced it is
// acknowledged by the secondary (output commit). Bytes are numbered by their
// offset in the guest's output stream, which is how the outside world (and a
// promoted secondary) tells what it has already seen.
type outputBuffer struct {
	mu       sync.Mutex
	cur      []byte      // output of the running epoch
	curTimes []emitMark  // emit time of each Emit in cur, for latency
	curStart uint64      // stream offset of cur[0]
	sealed   []sealedOut // closed epochs awaiting ack, oldest first
	released uint64      // everything before this offset has been released
}

type emitMark struct {
	off uint64
	at  time.Time
}

type sealedOut struct {
	epoch uint64
	off   uint64
	data  []byte
	marks []emitMark
}

// emit appends guest output to the running epoch.
func (o *outputBuffer) emit(b []byte, now time.Time) {
	o.mu.Lock()
	o.curTimes = append(o.curTimes, emitMark{o.curStart + uint64(len(o.cur)), now})
	o.cur = append(o.cur, b...)
	o.mu.Unlock()
}

// seal closes the running epoch's output (called during the pause) and
// returns its offset and bytes for the checkpoint. The returned slice stays
// valid: sealed buffers are never appended to.
func (o *outputBuffer) seal(epoch uint64) (uint64, []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := sealedOut{epoch: epoch, off: o.curStart, data: o.cur, marks: o.curTimes}
	o.curStart += uint64(len(o.cur))
	o.cur, o.curTimes = nil, nil
	if len(s.data) > 0 {
		o.sealed = append(o.sealed, s)
	}
	return s.off, s.data
}

// since returns the sealed output from stream offset off on (contiguous,
// since sealed epochs follow each other) and the offset it ends at.
func (o *outputBuffer) since(off uint64) ([]byte, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var parts [][]byte
	for _, s := range o.sealed {
		end := s.off + uint64(len(s.data))
		if end <= off {
			continue
		}
		if s.off < off {
			parts = append(parts, s.data[off-s.off:])
		} else {
			parts = append(parts, s.data)
		}
	}
	end := o.curStart
	switch len(parts) {
	case 0:
		return nil, end
	case 1:
		return parts[0], end
	}
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b, end
}

// releasable pops every sealed epoch ≤ epoch.
func (o *outputBuffer) releasable(epoch uint64) []sealedOut {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := 0
	for i < len(o.sealed) && o.sealed[i].epoch <= epoch {
		i++
	}
	out := append([]sealedOut(nil), o.sealed[:i]...)
	o.sealed = o.sealed[i:]
	return out
}

// unrelease puts popped epochs back at the front (the sink failed).
func (o *outputBuffer) unrelease(s []sealedOut) {
	o.mu.Lock()
	o.sealed = append(s, o.sealed...)
	o.mu.Unlock()
}

func (o *outputBuffer) setReleased(off uint64) {
	o.mu.Lock()
	if off > o.released {
		o.released = off
	}
	o.mu.Unlock()
}

func (o *outputBuffer) releasedThrough() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.released
}

// start sets the stream position of the next emitted byte (a promoted
// secondary continues the stream where the committed epoch left it).
func (o *outputBuffer) start(off uint64) {
	o.mu.Lock()
	o.curStart, o.released = off, off
	o.mu.Unlock()
}

// outputLog is the secondary's copy of committed output that the primary
// may not have released yet: on takeover the promoted secondary releases
// whatever the outside world has not seen.
type outputLog struct {
	start uint64 // stream offset of data[0]
	data  []byte
}

func (l *outputLog) end() uint64 { return l.start + uint64(len(l.data)) }

// trim drops output the primary reports released.
func (l *outputLog) trim(released uint64) {
	if released <= l.start {
		return
	}
	if released >= l.end() {
		l.start, l.data = l.end(), l.data[:0]
		return
	}
	n := copy(l.data, l.data[released-l.start:])
	l.data = l.data[:n]
	l.start = released
}
