package vmguest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
)

// Input forwarding (ftmirror/input.go): the primary sends each frame its
// guest NIC accepted, with the NIC's receive sequence number
// (virtionet.Device.RxSeq), as an input record; the secondary keeps the
// recent ones in an InputLog, and at a takeover gives the restored NIC
// those numbered above the checkpoint's RxSeq, in order, so the input
// that reached the old primary after its last checkpoint is not lost
// with it.
//
// An input record is the sequence number (u64, little-endian) followed
// by the frame.

// inputHeader is the size of an input record's header.
const inputHeader = 8

// MaxInputFrame bounds the frame an input record carries: the largest
// the guest NIC accepts.
const MaxInputFrame = virtionet.MaxFrameLen

// ErrBadInput is a malformed input record.
var ErrBadInput = errors.New("vmguest: bad input record")

// AppendInput appends the input record of frame, received with sequence
// number seq, to dst.
func AppendInput(dst []byte, seq uint64, frame []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	return append(dst, frame...)
}

// ParseInput splits an input record; frame aliases rec.
func ParseInput(rec []byte) (seq uint64, frame []byte, err error) {
	switch {
	case len(rec) <= inputHeader:
		return 0, nil, fmt.Errorf("%w: %d bytes, no frame", ErrBadInput, len(rec))
	case len(rec)-inputHeader > MaxInputFrame:
		return 0, nil, fmt.Errorf("%w: a %d-byte frame, at most %d", ErrBadInput, len(rec)-inputHeader, MaxInputFrame)
	}
	seq = binary.LittleEndian.Uint64(rec)
	if seq == 0 {
		return 0, nil, fmt.Errorf("%w: sequence number 0", ErrBadInput)
	}
	return seq, rec[inputHeader:], nil
}

// InputLog keeps the most recent input records a secondary was sent,
// bounded in frames and bytes (the oldest go first): a checkpoint every
// epoch makes older ones useless, so the bound only has to cover the
// input of an epoch or two. It is safe for concurrent use.
type InputLog struct {
	maxFrames, maxBytes int

	mu      sync.Mutex
	seqs    []uint64
	frames  [][]byte
	bytes   int
	evicted uint64 // pushed out by the bound
	bad     uint64 // malformed records
	resets  uint64 // numbering started again (a new primary)
}

// NewInputLog returns a log of at most maxFrames frames and maxBytes
// bytes of frames.
func NewInputLog(maxFrames, maxBytes int) *InputLog {
	return &InputLog{maxFrames: max(maxFrames, 1), maxBytes: max(maxBytes, MaxInputFrame)}
}

// Add keeps a copy of the record's frame. A sequence number not above the
// last one kept means a new primary numbers from its own checkpoint: the
// frames kept are forgotten first. A malformed record is counted and
// refused.
func (l *InputLog) Add(rec []byte) error {
	seq, frame, err := ParseInput(rec)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.bad++
		return err
	}
	if n := len(l.seqs); n > 0 && seq <= l.seqs[n-1] {
		l.resets++
		l.clearLocked()
	}
	for len(l.seqs) > 0 && (len(l.seqs) >= l.maxFrames || l.bytes+len(frame) > l.maxBytes) {
		l.bytes -= len(l.frames[0])
		l.frames[0] = nil // not kept alive by the slice's backing array
		l.seqs, l.frames = l.seqs[1:], l.frames[1:]
		l.evicted++
	}
	l.seqs = append(l.seqs, seq)
	l.frames = append(l.frames, append([]byte(nil), frame...))
	l.bytes += len(frame)
	return nil
}

// Reset forgets every frame (a new session).
func (l *InputLog) Reset() {
	l.mu.Lock()
	l.clearLocked()
	l.mu.Unlock()
}

func (l *InputLog) clearLocked() {
	l.seqs, l.frames, l.bytes = nil, nil, 0
}

// After returns, in order, the frames numbered above seq, and the
// sequence number of the first (0 if none). A gap in the numbers (a
// record the primary could not forward) is not filled: the guest sees a
// dropped frame, as on any network.
func (l *InputLog) After(seq uint64) (frames [][]byte, first uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.seqs {
		if s > seq {
			return append([][]byte(nil), l.frames[i:]...), s
		}
	}
	return nil, 0
}

// InputStats are an InputLog's counters.
type InputStats struct {
	Frames  int    // kept now
	Last    uint64 // the newest frame's sequence number (0: none)
	Evicted uint64 // pushed out by the bound
	Bad     uint64 // malformed records refused
	Resets  uint64 // times the numbering started again
}

// Stats returns the log's counters.
func (l *InputLog) Stats() InputStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := InputStats{Frames: len(l.seqs), Evicted: l.evicted, Bad: l.bad, Resets: l.resets}
	if n := len(l.seqs); n > 0 {
		st.Last = l.seqs[n-1]
	}
	return st
}
