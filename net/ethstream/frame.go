package ethstream

import (
	"encoding/binary"
	"hash/crc32"
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

// version is the only header version this package speaks.
const version = 1

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
	offSession = 4  // uint32 (byte 3 is reserved: sent 0, ignored)
	offSeq     = 8  // uint64: frame number of a data or close frame
	offAck     = 16 // uint64: every frame below it was received
	offSACK    = 24 // uint64: bit i set = frame ack+1+i received
	offWindow  = 32 // uint16: frames the receiver takes beyond ack
	offLength  = 34 // uint16: payload bytes
	offCRC     = 36 // uint32: CRC-32C of the payload, then bytes 0-35
)

// maxWindow is the largest window the 16-bit field advertises.
const maxWindow = 1<<16 - 1

// castagnoli is CRC-32C's table (hash/crc32 uses the SSE 4.2 instruction
// for it on amd64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is a stream header's fields.
type header struct {
	kind    kind
	flags   uint8
	session uint32
	seq     uint64
	ack     uint64
	sack    uint64
	window  uint16
	length  uint16
}

// put writes h to b (at least headerLen bytes) with its CRC, given the
// CRC-32C of the payload (payloadCRC(nil) for none). The CRC covers the
// payload before the header so that a retransmission, whose
// acknowledgement fields change, reuses the payload's part: only the 36
// header bytes are summed again.
func (h *header) put(b []byte, pcrc uint32) {
	_ = b[headerLen-1]
	b[offVersion] = version
	b[offKind] = byte(h.kind)
	b[offFlags] = h.flags
	b[3] = 0
	binary.BigEndian.PutUint32(b[offSession:], h.session)
	binary.BigEndian.PutUint64(b[offSeq:], h.seq)
	binary.BigEndian.PutUint64(b[offAck:], h.ack)
	binary.BigEndian.PutUint64(b[offSACK:], h.sack)
	binary.BigEndian.PutUint16(b[offWindow:], h.window)
	binary.BigEndian.PutUint16(b[offLength:], h.length)
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Update(pcrc, castagnoli, b[:offCRC]))
}

// payloadCRC is the first part of a frame's CRC.
func payloadCRC(p []byte) uint32 { return crc32.Update(0, castagnoli, p) }

// parseError is why a received frame was dropped before reaching a Conn.
type parseError uint8

const (
	parseOK parseError = iota
	// parseMalformed: too short, not our EtherType, an unknown version or
	// kind, or a payload length beyond the frame.
	parseMalformed
	// parseBadCRC: the CRC does not match (corrupted on the way).
	parseBadCRC
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
	if crc32.Update(payloadCRC(payload), castagnoli, b[:offCRC]) != binary.BigEndian.Uint32(b[offCRC:]) {
		return h, nil, parseBadCRC
	}
	return h, payload, parseOK
}

// putEthernet writes the Ethernet header of a frame from src to dst.
func putEthernet(b []byte, dst, src [6]byte) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], EtherType)
}
