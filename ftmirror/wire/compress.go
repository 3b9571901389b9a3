package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Compression of GROUP payloads (frame type TGroupZ). A GROUPZ payload is
//
//	codec u8 | raw length u32 | compressed bytes
//
// and decompresses to exactly raw length bytes: a GROUP payload, checked
// by ParseGroup like one that came uncompressed. The raw length is at most
// MaxPayload, and the decoder never writes more than that many bytes, so a
// small frame cannot make the receiver inflate gigabytes (a decompression
// bomb): s2's length header and zstd's frame content size (where the frame
// has one; small frames do not) must equal the raw length, and the zstd
// decoder stops at the raw length whatever its frames hold.

// Codecs carried in a GROUPZ payload.
const (
	CodecS2   = 1 // github.com/klauspost/compress/s2, one block
	CodecZstd = 2 // github.com/klauspost/compress/zstd, one frame, fastest level
)

// zHeaderSize is the GROUPZ header: codec and raw length.
const zHeaderSize = 1 + 4

// ErrBadCompressed is wrapped by every refusal of a GROUPZ payload.
var ErrBadCompressed = errors.New("wire: malformed compressed group")

// Compressor compresses GROUP payloads with one codec. It is not safe for
// concurrent use.
type Compressor struct {
	codec uint8
	zenc  *zstd.Encoder
}

// NewCompressor returns a compressor for codec (CodecS2 or CodecZstd).
func NewCompressor(codec uint8) (*Compressor, error) {
	c := &Compressor{codec: codec}
	switch codec {
	case CodecS2:
	case CodecZstd:
		// One goroutine, a window no larger than a group needs, no CRC
		// (the frame's MAC already covers the bytes).
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false),
			zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return nil, fmt.Errorf("wire: zstd encoder: %w", err)
		}
		c.zenc = enc
	default:
		return nil, fmt.Errorf("wire: unknown compression codec %d", codec)
	}
	return c, nil
}

// Codec is the compressor's codec.
func (c *Compressor) Codec() uint8 { return c.codec }

// AppendGroupZ appends the GROUPZ payload for the GROUP payload raw to dst.
// The caller compares the lengths and keeps whichever is smaller.
func (c *Compressor) AppendGroupZ(dst, raw []byte) []byte {
	dst = append(dst, c.codec)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(raw)))
	switch c.codec {
	case CodecS2:
		n := len(dst)
		need := s2.MaxEncodedLen(len(raw))
		if cap(dst)-n < need {
			nd := make([]byte, n, n+need)
			copy(nd, dst)
			dst = nd
		}
		z := s2.Encode(dst[n:n+need], raw)
		return dst[:n+len(z)]
	default:
		return c.zenc.EncodeAll(raw, dst)
	}
}

// Decompressor inflates GROUPZ payloads. It is not safe for concurrent use.
type Decompressor struct {
	zdec *zstd.Decoder
}

// NewDecompressor returns a decompressor for every codec.
func NewDecompressor() (*Decompressor, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxPayload), zstd.WithDecoderMaxWindow(8<<20),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return nil, fmt.Errorf("wire: zstd decoder: %w", err)
	}
	return &Decompressor{zdec: dec}, nil
}

// Close releases the decoder's resources.
func (d *Decompressor) Close() { d.zdec.Close() }

// GroupZ returns the GROUP payload inside GROUPZ payload p, decompressed
// into buf (reallocated only if shorter than the raw length). Any refusal
// wraps ErrBadCompressed and buf's contents are then undefined.
func (d *Decompressor) GroupZ(buf, p []byte) ([]byte, error) {
	if len(p) < zHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCompressed, len(p))
	}
	codec, rawLen := p[0], binary.LittleEndian.Uint32(p[1:])
	z := p[zHeaderSize:]
	if rawLen > MaxPayload {
		return nil, fmt.Errorf("%w: raw length %d over %d", ErrBadCompressed, rawLen, MaxPayload)
	}
	if cap(buf) < int(rawLen) {
		buf = make([]byte, rawLen)
	}
	buf = buf[:rawLen:rawLen]
	switch codec {
	case CodecS2:
		n, err := s2.DecodedLen(z)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %w", ErrBadCompressed, err)
		}
		if n != int(rawLen) {
			return nil, fmt.Errorf("%w: s2 block holds %d bytes, header says %d", ErrBadCompressed, n, rawLen)
		}
		out, err := s2.Decode(buf, z)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %w", ErrBadCompressed, err)
		}
		return out, nil
	case CodecZstd:
		var h zstd.Header
		if err := h.Decode(z); err != nil {
			return nil, fmt.Errorf("%w: zstd header: %w", ErrBadCompressed, err)
		}
		if h.HasFCS && h.FrameContentSize != uint64(rawLen) {
			return nil, fmt.Errorf("%w: zstd frame holds %d bytes, header says %d", ErrBadCompressed, h.FrameContentSize, rawLen)
		}
		// The cap limit stops the decoder at rawLen bytes, whatever the
		// frames inside claim.
		out, err := d.zdec.DecodeAll(z, buf[:0])
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %w", ErrBadCompressed, err)
		}
		if len(out) != int(rawLen) || (len(out) > 0 && &out[0] != &buf[0]) {
			return nil, fmt.Errorf("%w: zstd gave %d bytes, header says %d", ErrBadCompressed, len(out), rawLen)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: codec %d", ErrBadCompressed, codec)
}
