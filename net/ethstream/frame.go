package ethstream

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// EtherType of stream frames: IEEE 802 "Local Experimental EtherType 2".
const EtherType = 0x88B6

// Sizes of a frame's parts.
const (
	// ethHeaderLen is the Ethernet II header: destination, source, type.
	ethHeaderLen = 14
	// headerLen is the stream header after it.
	headerLen = 40
	// frameOverhead is everything before a frame's payload.
	frameOverhead = ethHeaderLen + headerLen
)

// version is the only header version this package speaks. Version 2
// replaced version 1's CRC-32C with the XXH64-based sum (see put);
// version 3 gave the reserved byte to the SACK bitmap's shift, whose
// bits version 2 counted from ack+1 only.
const version = 3

// kind is what a frame is.
type kind uint8

const (
	// kindData carries payload bytes of the stream as frame seq.
	kindData kind = 1
	// kindAck carries only the acknowledgement fields (a pure ack, or with
	// flagAckNow a window probe).
	kindAck kind = 2
	// kindClose ends the stream: seq is one past the last data frame.
	kindClose kind = 3
)

// flagAckNow asks the receiver to acknowledge at once rather than after
// its usual count of frames or its delayed-ack timer: the sender has
// stopped (its window or congestion window is used up, or it probes a
// zero window) and will not go on until it hears.
const flagAckNow = 1 << 0

// Offsets of the stream header's fields (big-endian), from the end of the
// Ethernet header.
const (
	offVersion = 0  // uint8
	offKind    = 1  // uint8
	offFlags   = 2  // uint8
	offShift   = 3  // uint8: the SACK bitmap starts at frame ack+1+64*shift
	offSession = 4  // uint32
	offSeq     = 8  // uint64: frame number of a data or close frame
	offAck     = 16 // uint64: every frame below it was received
	offSACK    = 24 // uint64: bit i set = frame sackBase+i received
	offWindow  = 32 // uint16: frames the receiver takes beyond ack
	offLength  = 34 // uint16: payload bytes
	offSum     = 36 // uint32: checksum of bytes 0-35 and the payload
)

// maxWindow is the largest window the 16-bit field advertises.
const maxWindow = 1<<16 - 1

// header is a stream header's fields.
type header struct {
	kind    kind
	flags   uint8
	session uint32
	seq     uint64
	ack     uint64
	sack    uint64
	shift   uint8 // the SACK bitmap starts at frame sackBase
	window  uint16
	length  uint16
}

// sackBase is the frame of the SACK bitmap's bit 0.
func (h *header) sackBase() uint64 { return h.ack + 1 + sackBlock*uint64(h.shift) }

// sackBlock is the unit of the SACK bitmap's shift: its width, so that
// shifted bitmaps tile the frames beyond ack.
const sackBlock = 64

// put writes h to b (at least headerLen bytes) with its checksum, given
// the payload's sum (payloadSum(nil) for none). The checksum is the low 32
// bits of XXH64 over header bytes 0-35 followed by the payload's XXH64
// (little-endian), so that a retransmission, whose acknowledgement fields
// change, reuses the payload's part: only 44 bytes are hashed again.
//
// Why XXH64 and not CRC-32C: the NIC's frame check sequence already
// guards the wire, so this sum is for what goes wrong between the NICs
// and the stream (DMA, memory), where a 32-bit hash with full avalanche
// is as good a check as a CRC. Without SSE 4.2 (QEMU's default CPU) Go's
// CRC-32C is a table walk, nine loads per 8 bytes, and it was 7-9 % of
// each machine's CPU in a sync; XXH64 needs one load and two multiplies
// per 8 bytes (BenchmarkPayloadSum: 5 times faster under TCG).
func (h *header) put(b []byte, psum uint64) {
	_ = b[headerLen-1]
	b[offVersion] = version
	b[offKind] = byte(h.kind)
	b[offFlags] = h.flags
	b[offShift] = h.shift
	binary.BigEndian.PutUint32(b[offSession:], h.session)
	binary.BigEndian.PutUint64(b[offSeq:], h.seq)
	binary.BigEndian.PutUint64(b[offAck:], h.ack)
	binary.BigEndian.PutUint64(b[offSACK:], h.sack)
	binary.BigEndian.PutUint16(b[offWindow:], h.window)
	binary.BigEndian.PutUint16(b[offLength:], h.length)
	binary.BigEndian.PutUint32(b[offSum:], frameSum(b, psum))
}

// frameSum is the checksum of a frame whose stream header starts b, given
// its payload's sum.
func frameSum(b []byte, psum uint64) uint32 {
	var in [offSum + 8]byte
	copy(in[:], b[:offSum])
	binary.LittleEndian.PutUint64(in[offSum:], psum)
	return uint32(xxhash.Sum64(in[:]))
}

// payloadSum is the payload's part of a frame's checksum.
func payloadSum(p []byte) uint64 { return xxhash.Sum64(p) }

// emptySum is payloadSum of no payload (acks, probes, the close).
var emptySum = payloadSum(nil)

// parseError is why a received frame was dropped before reaching a Conn.
type parseError uint8

const (
	parseOK parseError = iota
	// parseMalformed: too short, not our EtherType, an unknown version or
	// kind, or a payload length beyond the frame.
	parseMalformed
	// parseBadSum: the checksum does not match (corrupted on the way).
	parseBadSum
)

// parse checks a received frame (Ethernet header included) and returns
// its header and payload, a slice of frame. Bytes after the payload (the
// padding a NIC adds to short frames) are ignored.
func parse(frame []byte) (h header, payload []byte, why parseError) {
	if len(frame) < frameOverhead || binary.BigEndian.Uint16(frame[12:]) != EtherType {
		return h, nil, parseMalformed
	}
	b := frame[ethHeaderLen:]
	if b[offVersion] != version {
		return h, nil, parseMalformed
	}
	h.kind = kind(b[offKind])
	if h.kind < kindData || h.kind > kindClose {
		return h, nil, parseMalformed
	}
	h.flags = b[offFlags]
	h.shift = b[offShift]
	h.session = binary.BigEndian.Uint32(b[offSession:])
	h.seq = binary.BigEndian.Uint64(b[offSeq:])
	h.ack = binary.BigEndian.Uint64(b[offAck:])
	h.sack = binary.BigEndian.Uint64(b[offSACK:])
	h.window = binary.BigEndian.Uint16(b[offWindow:])
	h.length = binary.BigEndian.Uint16(b[offLength:])
	if int(h.length) > len(b)-headerLen {
		return h, nil, parseMalformed
	}
	payload = b[headerLen : headerLen+int(h.length)]
	if frameSum(b, payloadSum(payload)) != binary.BigEndian.Uint32(b[offSum:]) {
		return h, nil, parseBadSum
	}
	return h, payload, parseOK
}

// putEthernet writes the Ethernet header of a frame from src to dst.
func putEthernet(b []byte, dst, src [6]byte) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], EtherType)
}
