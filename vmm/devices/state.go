package devices

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrBadState is wrapped by every Restore error: a blob of another device,
// another version, truncated, or with an impossible value.
var ErrBadState = errors.New("devices: bad saved state")

// The state encoding shared by all devices, little-endian:
//
//	magic   [4]byte  the device kind, e.g. "UART", "LAPC"
//	version uint16   that device's state format version
//	length  uint32   bytes of body that follow
//	body    ...      fields in the order the device's doc lists
//
// Variable-length fields are a uint32 length then the bytes. A reader
// refuses trailing bytes, so an encoding change must bump the version.

// Encoder appends a device state.
type Encoder struct {
	buf []byte
}

// NewEncoder starts a state of the given kind and version.
func NewEncoder(magic string, version uint16) *Encoder {
	if len(magic) != 4 {
		panic("devices: magic must be 4 bytes") // programming error
	}
	e := &Encoder{buf: make([]byte, 0, 64)}
	e.buf = append(e.buf, magic...)
	e.buf = binary.LittleEndian.AppendUint16(e.buf, version)
	e.buf = append(e.buf, 0, 0, 0, 0) // length, patched by Bytes
	return e
}

// U8 appends v.
func (e *Encoder) U8(v uint8) { e.buf = append(e.buf, v) }

// Bool appends v as one byte.
func (e *Encoder) Bool(v bool) {
	if v {
		e.U8(1)
	} else {
		e.U8(0)
	}
}

// U16 appends v.
func (e *Encoder) U16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }

// U32 appends v.
func (e *Encoder) U32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }

// U64 appends v.
func (e *Encoder) U64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

// I64 appends v.
func (e *Encoder) I64(v int64) { e.U64(uint64(v)) }

// Bytes appends a length-prefixed byte string.
func (e *Encoder) Bytes(b []byte) {
	e.U32(uint32(len(b)))
	e.buf = append(e.buf, b...)
}

// Finish returns the encoded state.
func (e *Encoder) Finish() []byte {
	binary.LittleEndian.PutUint32(e.buf[6:10], uint32(len(e.buf)-10))
	return e.buf
}

// Decoder reads a device state. The first error sticks: check Err (or
// Finish) once after reading every field.
type Decoder struct {
	buf []byte
	err error
}

// NewDecoder checks the header of state against magic and version.
func NewDecoder(state []byte, magic string, version uint16) *Decoder {
	d := &Decoder{}
	switch {
	case len(state) < 10:
		d.err = fmt.Errorf("%w: %s: %d bytes, shorter than the header", ErrBadState, magic, len(state))
	case string(state[:4]) != magic:
		d.err = fmt.Errorf("%w: kind %q, want %q", ErrBadState, state[:4], magic)
	case binary.LittleEndian.Uint16(state[4:6]) != version:
		d.err = fmt.Errorf("%w: %s: version %d, want %d", ErrBadState, magic, binary.LittleEndian.Uint16(state[4:6]), version)
	case uint64(binary.LittleEndian.Uint32(state[6:10])) != uint64(len(state)-10):
		d.err = fmt.Errorf("%w: %s: body length %d, have %d", ErrBadState, magic, binary.LittleEndian.Uint32(state[6:10]), len(state)-10)
	default:
		d.buf = state[10:]
	}
	return d
}

func (d *Decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.buf) {
		d.err = fmt.Errorf("%w: truncated", ErrBadState)
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

// U8 reads a byte.
func (d *Decoder) U8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool() bool {
	v := d.U8()
	if v > 1 && d.err == nil {
		d.err = fmt.Errorf("%w: bool byte %d", ErrBadState, v)
	}
	return v == 1
}

// U16 reads a uint16.
func (d *Decoder) U16() uint16 {
	if b := d.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

// U32 reads a uint32.
func (d *Decoder) U32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// U64 reads a uint64.
func (d *Decoder) U64() uint64 {
	if b := d.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// I64 reads an int64.
func (d *Decoder) I64() int64 { return int64(d.U64()) }

// Bytes reads a length-prefixed byte string of at most max bytes, copied.
func (d *Decoder) Bytes(max int) []byte {
	n := d.U32()
	if d.err == nil && (uint64(n) > uint64(max) || n > math.MaxInt32) {
		d.err = fmt.Errorf("%w: byte string of %d bytes, at most %d", ErrBadState, n, max)
	}
	b := d.take(int(n))
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// Check records err (wrapped in ErrBadState) if cond is false: a decoded
// value out of its range.
func (d *Decoder) Check(cond bool, format string, args ...any) {
	if !cond && d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadState, fmt.Sprintf(format, args...))
	}
}

// Err returns the first error.
func (d *Decoder) Err() error { return d.err }

// Finish returns the first error, or one if bytes are left over.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrBadState, len(d.buf))
	}
	return d.err
}
