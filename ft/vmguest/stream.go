package vmguest

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The output stream: every piece of guest output becomes one record, and
// the engine numbers the records' bytes (its stream offset). A record is
//
//	byte 0     version (high nibble, StreamVersion) | kind (low nibble)
//	bytes 1-4  payload length n, little-endian
//	kind Frame only: bytes 5-12, the virtio-net TX sequence number
//	then n payload bytes
//
// Why a length prefix and not an escape: frames are binary, and a prefix
// lets the release side hand a frame to the NIC without copying it
// byte by byte. Why a version in every record rather than a stream
// header: after a takeover the promoted node releases from wherever the
// world stands, which is a record boundary but not the stream's start, so
// every record must be self-describing.
const (
	StreamVersion = 1

	KindSerial = 1 // console bytes, in order
	KindFrame  = 2 // one transmitted Ethernet frame

	// MaxSerialRecord bounds a serial record (the UART hands over a few
	// bytes per VM exit; a larger write is split).
	MaxSerialRecord = 4096
	// MaxFrameRecord bounds a frame record: a jumbo frame and then some.
	MaxFrameRecord = 64 << 10

	recHeader      = 5
	frameSeqLength = 8
)

// ErrBadRecord is wrapped by every refusal of the stream parser: the
// stream lost sync and nothing after it can be trusted.
var ErrBadRecord = errors.New("vmguest: bad output record")

// AppendSerial appends serial records carrying b to dst (split at
// MaxSerialRecord).
func AppendSerial(dst, b []byte) []byte {
	for len(b) > 0 {
		n := min(len(b), MaxSerialRecord)
		dst = append(dst, StreamVersion<<4|KindSerial)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
		dst = append(dst, b[:n]...)
		b = b[n:]
	}
	return dst
}

// AppendFrame appends a frame record to dst. A frame over MaxFrameRecord
// is an error: splitting it would change what the wire carries.
func AppendFrame(dst []byte, seq uint64, frame []byte) ([]byte, error) {
	if len(frame) > MaxFrameRecord {
		return dst, fmt.Errorf("vmguest: frame %d is %d bytes, limit %d", seq, len(frame), MaxFrameRecord)
	}
	dst = append(dst, StreamVersion<<4|KindFrame)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(frame)))
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	return append(dst, frame...), nil
}

// Record is one parsed record. Data aliases the parser's buffer and is
// valid until the next Feed.
type Record struct {
	Kind int
	Seq  uint64 // KindFrame only
	Data []byte
}

// Parser splits a byte stream, delivered in arbitrary pieces, back into
// records. It must start at a record boundary.
type Parser struct {
	buf []byte
	err error
}

// Feed adds b and calls fn for every record completed, in order. After an
// error (a malformed record, or fn's) the parser refuses everything.
func (p *Parser) Feed(b []byte, fn func(Record) error) error {
	if p.err != nil {
		return p.err
	}
	p.buf = append(p.buf, b...)
	off := 0
	for {
		r, n, err := parseRecord(p.buf[off:])
		if err != nil {
			p.err = err
			return err
		}
		if n == 0 {
			break
		}
		if err := fn(r); err != nil {
			p.err = err
			return err
		}
		off += n
	}
	// Keep only the incomplete tail; copy so the buffer does not grow
	// without bound across feeds.
	p.buf = append(p.buf[:0], p.buf[off:]...)
	return nil
}

// Pending is the number of bytes of an incomplete record held.
func (p *Parser) Pending() int { return len(p.buf) }

// parseRecord returns the record at the start of b and its size, or size
// 0 if b holds only part of it. Every field is checked before the length
// is trusted, so garbage is refused at once rather than waited for.
func parseRecord(b []byte) (Record, int, error) {
	if len(b) == 0 {
		return Record{}, 0, nil
	}
	if v := b[0] >> 4; v != StreamVersion {
		return Record{}, 0, fmt.Errorf("%w: version %d, want %d", ErrBadRecord, v, StreamVersion)
	}
	kind := int(b[0] & 0xf)
	limit, head := 0, recHeader
	switch kind {
	case KindSerial:
		limit = MaxSerialRecord
	case KindFrame:
		limit, head = MaxFrameRecord, recHeader+frameSeqLength
	default:
		return Record{}, 0, fmt.Errorf("%w: kind %d", ErrBadRecord, kind)
	}
	if len(b) < recHeader {
		return Record{}, 0, nil
	}
	n := binary.LittleEndian.Uint32(b[1:])
	if n > uint32(limit) || (kind == KindSerial && n == 0) {
		return Record{}, 0, fmt.Errorf("%w: kind %d length %d (limit %d)", ErrBadRecord, kind, n, limit)
	}
	total := head + int(n)
	if len(b) < total {
		return Record{}, 0, nil
	}
	r := Record{Kind: kind, Data: b[head:total:total]}
	if kind == KindFrame {
		r.Seq = binary.LittleEndian.Uint64(b[recHeader:])
	}
	return r, total, nil
}
