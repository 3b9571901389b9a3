package wire

import (
	"encoding/binary"
	"fmt"
)

// Payload formats (little-endian):
//
//	HELLO     role u8 | generation u64 | pages u64 | nonce [16]
//	BEGIN     released u64 (output offset the primary has released through)
//	GROUP     index u32 | records u32 | records...
//	  record  pfn u32 | kind u8 | body
//	    Zero  (no body): the page is all zero
//	    Full  4096 bytes
//	    Delta len u16 | pagediff runs (len bytes): only the changed words
//	END       groups u32 | pages u32 | flags u8 | outOffset u64 | outEnd u64 |
//	          outLen u32 | out bytes | blobs u16 | blobs...
//	  blob    id u16 | version u32 | len u32 | bytes
//	ACK       flags u8 (bit 0: the secondary's copy is complete)
//	HEARTBEAT sent-at u64 (sender's clock, ns; informational)
//	BYE       reason (text)
//	RELEASE   released u64 (output offset the primary has now written to
//	          the world; sent after each release, so a secondary that takes
//	          over replays only what may not have reached it)
//	GROUPZ    codec u8 | raw length u32 | compressed GROUP payload
//	          (compress.go: s2 or zstd, sent only when smaller)

// PageSize is the guest page size carried in Full records.
const PageSize = 4096

// Record kinds.
const (
	KindZero  = 0
	KindFull  = 1
	KindDelta = 2
)

// Hello is the handshake payload.
type Hello struct {
	Role       uint8
	Generation uint64
	Pages      uint64
	Nonce      [NonceSize]byte
	Flags      uint8 // Hello* bits: what this end's CPU does fast
}

// HelloFastGMAC: this end's CPU has AES and carry-less multiply
// instructions, so GMAC is its fastest MAC (ChooseSuite).
const HelloFastGMAC = 1 << 0

// LocalHelloFlags are the HELLO flags of the CPU this runs on.
func LocalHelloFlags() uint8 {
	if fastGMAC() {
		return HelloFastGMAC
	}
	return 0
}

// Roles carried in Hello.
const (
	RolePrimary   = 1
	RoleSecondary = 2
)

func (h Hello) Append(b []byte) []byte {
	b = append(b, h.Role)
	b = binary.LittleEndian.AppendUint64(b, h.Generation)
	b = binary.LittleEndian.AppendUint64(b, h.Pages)
	b = append(b, h.Nonce[:]...)
	return append(b, h.Flags)
}

// ParseHello decodes a HELLO payload.
func ParseHello(p []byte) (Hello, error) {
	var h Hello
	if len(p) != 1+8+8+NonceSize+1 {
		return h, fmt.Errorf("%w: HELLO is %d bytes", ErrBadPayload, len(p))
	}
	h.Role = p[0]
	h.Generation = binary.LittleEndian.Uint64(p[1:])
	h.Pages = binary.LittleEndian.Uint64(p[9:])
	copy(h.Nonce[:], p[17:])
	h.Flags = p[17+NonceSize]
	if h.Role != RolePrimary && h.Role != RoleSecondary {
		return h, fmt.Errorf("%w: HELLO role %d", ErrBadPayload, h.Role)
	}
	return h, nil
}

// GroupWriter builds a GROUP payload in place after a frame header.
type GroupWriter struct {
	Buf   []byte // the frame under construction (header reserved by Start)
	count int
}

// Reset starts a group with the given index in buf (which must already hold
// the reserved frame header).
func (g *GroupWriter) Reset(buf []byte, index uint32) {
	buf = binary.LittleEndian.AppendUint32(buf, index)
	g.Buf = binary.LittleEndian.AppendUint32(buf, 0)
	g.count = 0
}

// Count is the number of records so far.
func (g *GroupWriter) Count() int { return g.count }

// Finish writes the record count; call before sealing.
func (g *GroupWriter) Finish() {
	binary.LittleEndian.PutUint32(g.Buf[HeaderSize+4:], uint32(g.count))
}

// Zero adds a zero-page record.
func (g *GroupWriter) Zero(pfn uint32) {
	g.Buf = binary.LittleEndian.AppendUint32(g.Buf, pfn)
	g.Buf = append(g.Buf, KindZero)
	g.count++
}

// Full adds a full-page record and returns the 4096-byte slot to fill.
func (g *GroupWriter) Full(pfn uint32) []byte {
	g.Buf = binary.LittleEndian.AppendUint32(g.Buf, pfn)
	g.Buf = append(g.Buf, KindFull)
	n := len(g.Buf)
	g.Buf = append(g.Buf, make([]byte, PageSize)...)
	g.count++
	return g.Buf[n : n+PageSize]
}

// DropFull removes the full-page record just added by Full (the caller
// found the page zero after copying it).
func (g *GroupWriter) DropFull() {
	g.Buf = g.Buf[:len(g.Buf)-PageSize-5]
	g.count--
}

// Delta adds a delta record; appendDelta appends the runs to its argument.
func (g *GroupWriter) Delta(pfn uint32, appendDelta func([]byte) []byte) {
	g.Buf = binary.LittleEndian.AppendUint32(g.Buf, pfn)
	g.Buf = append(g.Buf, KindDelta, 0, 0)
	n := len(g.Buf)
	g.Buf = appendDelta(g.Buf)
	binary.LittleEndian.PutUint16(g.Buf[n-2:], uint16(len(g.Buf)-n))
	g.count++
}

// Record is one decoded page record; Data aliases the payload.
type Record struct {
	PFN  uint32
	Kind uint8
	Data []byte // Full: the page; Delta: the runs; Zero: nil
}

// ParseGroup checks a whole GROUP payload (every record in bounds, kinds
// known, pfn < pages) before returning anything, so a bad group applies
// nothing. recs is reused.
func ParseGroup(p []byte, pages uint64, recs []Record) (index uint32, out []Record, err error) {
	if len(p) < 8 {
		return 0, nil, fmt.Errorf("%w: GROUP is %d bytes", ErrBadPayload, len(p))
	}
	index = binary.LittleEndian.Uint32(p)
	n := binary.LittleEndian.Uint32(p[4:])
	if uint64(n) > uint64(len(p)) { // every record takes ≥ 5 bytes
		return 0, nil, fmt.Errorf("%w: GROUP claims %d records in %d bytes", ErrBadPayload, n, len(p))
	}
	out = recs[:0]
	p = p[8:]
	for i := uint32(0); i < n; i++ {
		if len(p) < 5 {
			return 0, nil, fmt.Errorf("%w: GROUP record %d truncated", ErrBadPayload, i)
		}
		r := Record{PFN: binary.LittleEndian.Uint32(p), Kind: p[4]}
		if uint64(r.PFN) >= pages {
			return 0, nil, fmt.Errorf("%w: GROUP record %d pfn %d beyond %d pages", ErrBadPayload, i, r.PFN, pages)
		}
		p = p[5:]
		switch r.Kind {
		case KindZero:
		case KindFull:
			if len(p) < PageSize {
				return 0, nil, fmt.Errorf("%w: GROUP record %d full page truncated", ErrBadPayload, i)
			}
			r.Data, p = p[:PageSize], p[PageSize:]
		case KindDelta:
			if len(p) < 2 {
				return 0, nil, fmt.Errorf("%w: GROUP record %d delta truncated", ErrBadPayload, i)
			}
			l := int(binary.LittleEndian.Uint16(p))
			if len(p) < 2+l {
				return 0, nil, fmt.Errorf("%w: GROUP record %d delta of %d bytes truncated", ErrBadPayload, i, l)
			}
			r.Data, p = p[2:2+l], p[2+l:]
		default:
			return 0, nil, fmt.Errorf("%w: GROUP record %d kind %d", ErrBadPayload, i, r.Kind)
		}
		out = append(out, r)
	}
	if len(p) != 0 {
		return 0, nil, fmt.Errorf("%w: %d bytes after GROUP records", ErrBadPayload, len(p))
	}
	return index, out, nil
}

// Blob is an opaque piece of state (vCPU, a device) with a version.
type Blob struct {
	ID      uint16
	Version uint32
	Data    []byte
}

// End is the payload that closes an epoch.
type End struct {
	Groups    uint32
	Pages     uint32
	Flags     uint8
	OutOffset uint64 // stream offset of Out[0]
	OutEnd    uint64 // stream offset the guest's output had reached at capture
	Out       []byte // output not sent before (may stop short of OutEnd)
	Blobs     []Blob
}

// End flags.
const (
	EndComplete = 1 << 0 // after this epoch the secondary holds every page
)

func (e *End) Append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, e.Groups)
	b = binary.LittleEndian.AppendUint32(b, e.Pages)
	b = append(b, e.Flags)
	b = binary.LittleEndian.AppendUint64(b, e.OutOffset)
	b = binary.LittleEndian.AppendUint64(b, e.OutEnd)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Out)))
	b = append(b, e.Out...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Blobs)))
	for _, bl := range e.Blobs {
		b = binary.LittleEndian.AppendUint16(b, bl.ID)
		b = binary.LittleEndian.AppendUint32(b, bl.Version)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(bl.Data)))
		b = append(b, bl.Data...)
	}
	return b
}

// ParseEnd decodes an END payload; slices alias p.
func ParseEnd(p []byte) (End, error) {
	var e End
	bad := func(what string) (End, error) {
		return End{}, fmt.Errorf("%w: END %s", ErrBadPayload, what)
	}
	if len(p) < 4+4+1+8+8+4 {
		return bad("too short")
	}
	e.Groups = binary.LittleEndian.Uint32(p)
	e.Pages = binary.LittleEndian.Uint32(p[4:])
	e.Flags = p[8]
	e.OutOffset = binary.LittleEndian.Uint64(p[9:])
	e.OutEnd = binary.LittleEndian.Uint64(p[17:])
	ol := uint64(binary.LittleEndian.Uint32(p[25:]))
	p = p[29:]
	if uint64(len(p)) < ol+2 {
		return bad("output truncated")
	}
	if e.OutOffset+ol < e.OutOffset || e.OutOffset+ol > e.OutEnd {
		return bad("output beyond its end")
	}
	e.Out, p = p[:ol], p[ol:]
	nb := int(binary.LittleEndian.Uint16(p))
	p = p[2:]
	for i := 0; i < nb; i++ {
		if len(p) < 10 {
			return bad("blob header truncated")
		}
		b := Blob{ID: binary.LittleEndian.Uint16(p), Version: binary.LittleEndian.Uint32(p[2:])}
		l := uint64(binary.LittleEndian.Uint32(p[6:]))
		p = p[10:]
		if uint64(len(p)) < l {
			return bad("blob truncated")
		}
		b.Data, p = p[:l], p[l:]
		e.Blobs = append(e.Blobs, b)
	}
	if len(p) != 0 {
		return bad("trailing bytes")
	}
	return e, nil
}

// U64 payloads (BEGIN, HEARTBEAT).
func AppendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// ParseU64 decodes an 8-byte payload.
func ParseU64(p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("%w: want 8 bytes, got %d", ErrBadPayload, len(p))
	}
	return binary.LittleEndian.Uint64(p), nil
}
