// Package wire is the frame codec of the doppel fault-tolerance link: versioned,
// length-prefixed frames with a keyed MAC (corruption and authentication),
// with a sequence number per direction so that a replayed, reordered or
// reflected frame is refused.
//
// # Frame layout (all integers little-endian)
//
//	offset size  field
//	0      2     magic "dF"
//	2      1     version (5; see Version)
//	3      1     type (Type)
//	4      4     payload length n (≤ MaxPayload)
//	8      8     sequence number (per direction, from 0, +1 a frame)
//	16     8     epoch
//	24     n     payload
//	24+n   16    MAC tag of bytes [0, 24+n)
//
// The MAC is the only integrity check. Every transport under the codec
// already checks for line corruption (TCP's checksum, the ether stream's
// XXH64 sum, the NIC's frame check sequence), so what reaches the codec
// corrupt was corrupted in a host or forged, and the MAC, which a random
// change passes with probability 2^-128, refuses both alike (ErrForged).
// Versions up to 4 also carried a CRC-32C of the frame before the tag: a
// second pass over every byte that QEMU's default CPU (no SSE 4.2) runs
// from tables, more than half of the codec's time there
// (BenchmarkSealOpen), for a check the MAC already makes. The sequence
// number is checked after the MAC, so a forged frame cannot move the
// expected sequence.
//
// # Keys and MAC
//
// The two HELLO frames of a session (sequence 0 in each direction) carry a
// fresh 16-byte random nonce each and are authenticated with
// HMAC-SHA256(PSK, direction || frame) truncated to 16 bytes. Both sides then
// derive a session key K = HMAC-SHA256(PSK, "doppel-ft session v1" || nonce
// of the primary || nonce of the secondary), and every later frame is
// authenticated with an AEAD used as a MAC (empty plaintext, the frame as
// additional data) under K with the 96-bit nonce direction(4) ||
// sequence(8). A nonce never repeats under one key: the key is new each
// session and the sequence only grows. The AEAD is the session's Suite,
// chosen from the two HELLOs (ChooseSuite): AES-256-GCM (GMAC) when both
// ends' CPUs have AES and carry-less multiply instructions, else
// ChaCha20-Poly1305, as TLS stacks choose. GMAC runs at about 6.5 GB/s on
// one core here against 1.3 GB/s for HMAC-SHA256 (SHA-NI), which matters
// because the initial sync must run near loopback TCP speed (the figures
// are in ftmirror/doc.go); without those instructions Go's GHASH is a
// table walk (about 150 MB/s on this host, and more than half of the
// engine's time on an emulated CPU without them), where Poly1305 needs
// only 64-bit multiplies (about 700 MB/s with ChaCha20 in portable code).
//
// # Versions
//
// Version 2 added two frame types: RELEASE (the primary released output
// through an offset) and GROUPZ (a GROUP payload compressed with s2 or
// zstd, compress.go). Version 3 added the HELLO's flags and the MAC suites,
// version 4 INPUT (a frame the guest received, forwarded as it arrives);
// version 5 dropped the frame's CRC-32C.
// The version is checked in every frame header, so an older peer is
// refused at its HELLO with ErrVersion.
package wire

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// Frame layout constants.
const (
	// Version 2 added GROUPZ (compressed groups) and RELEASE, version 3
	// the HELLO's flags (the MAC suite), version 4 INPUT, version 5
	// dropped the CRC; an older peer is refused at its HELLO (ErrVersion)
	// rather than misreading them.
	Version    = 5
	HeaderSize = 24
	TagSize    = 16
	Overhead   = HeaderSize + TagSize
	// MaxPayload bounds a frame so that a corrupted length cannot make the
	// receiver allocate or wait for gigabytes.
	MaxPayload = 8 << 20
	KeySize    = 32
	NonceSize  = 16
)

var magic = [2]byte{'d', 'F'}

// Type is the frame type.
type Type uint8

// Frame types. See ftmirror/doc.go for the protocol that uses them.
const (
	THello     Type = 1  // handshake: role, generation, nonce
	TBegin     Type = 2  // an epoch opens: staging starts on the secondary
	TGroup     Type = 3  // page records of the open epoch
	TEnd       Type = 4  // epoch closes: counts, state blobs, output; commit
	TAck       Type = 5  // secondary committed an epoch
	THeartbeat Type = 6  // liveness, both directions
	TBye       Type = 7  // orderly end of a session
	TRelease   Type = 8  // primary released output through an offset (v2)
	TGroupZ    Type = 9  // a compressed GROUP payload (v2)
	TInput     Type = 10 // guest input received after the last checkpoint (v4)
	maxType         = TInput
)

func (t Type) String() string {
	switch t {
	case THello:
		return "HELLO"
	case TBegin:
		return "BEGIN"
	case TGroup:
		return "GROUP"
	case TEnd:
		return "END"
	case TAck:
		return "ACK"
	case THeartbeat:
		return "HEARTBEAT"
	case TBye:
		return "BYE"
	case TRelease:
		return "RELEASE"
	case TGroupZ:
		return "GROUPZ"
	case TInput:
		return "INPUT"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Direction names the sender of a frame; it is bound into every MAC so a
// frame reflected back to its sender is refused.
type Direction uint32

const (
	PrimaryToSecondary Direction = 1
	SecondaryToPrimary Direction = 2
)

// Errors. Every refusal wraps one of these, so callers can tell a damaged
// frame from a replayed one from a broken stream.
var (
	ErrBadMagic   = errors.New("wire: bad magic")
	ErrVersion    = errors.New("wire: unsupported version")
	ErrType       = errors.New("wire: unknown frame type")
	ErrTooLarge   = errors.New("wire: payload length over limit")
	ErrTruncated  = errors.New("wire: truncated frame")
	ErrForged     = errors.New("wire: authentication failed (corrupt or forged frame, or wrong key)")
	ErrReplay     = errors.New("wire: unexpected sequence number (replayed, reordered or lost frame)")
	ErrNoSession  = errors.New("wire: no session key yet (only HELLO allowed)")
	ErrTrailing   = errors.New("wire: trailing bytes after frame")
	ErrBadPayload = errors.New("wire: malformed payload")
)

// Frame is a decoded, authenticated frame. Payload aliases the buffer it was
// decoded from.
type Frame struct {
	Type    Type
	Seq     uint64
	Epoch   uint64
	Payload []byte
}

// Codec seals outgoing frames and opens incoming ones for one end of a
// session. It is not safe for concurrent use by several senders, nor by
// several receivers; one sender and one receiver may run concurrently.
type Codec struct {
	psk     []byte
	out, in Direction
	sendSeq uint64
	recvSeq uint64
	gcm     cipher.AEAD // the session's MAC; nil until SetSessionKey
	nonceTx [12]byte
	nonceRx [12]byte
	tagTx   [TagSize]byte
}

// NewCodec returns a codec that sends in direction out and receives frames
// sent in the other direction. psk must be KeySize bytes.
func NewCodec(psk []byte, out Direction) (*Codec, error) {
	if len(psk) != KeySize {
		return nil, fmt.Errorf("wire: pre-shared key is %d bytes, want %d", len(psk), KeySize)
	}
	in := SecondaryToPrimary
	if out == SecondaryToPrimary {
		in = PrimaryToSecondary
	}
	c := &Codec{psk: append([]byte(nil), psk...), out: out, in: in}
	binary.LittleEndian.PutUint32(c.nonceTx[:4], uint32(out))
	binary.LittleEndian.PutUint32(c.nonceRx[:4], uint32(in))
	return c, nil
}

// SessionKey derives the session key from the pre-shared key and the two
// HELLO nonces.
func SessionKey(psk, primaryNonce, secondaryNonce []byte) []byte {
	m := hmac.New(sha256.New, psk)
	m.Write([]byte("doppel-ft session v1"))
	m.Write(primaryNonce)
	m.Write(secondaryNonce)
	return m.Sum(nil)
}

// Suite is the AEAD a session's frames are authenticated with.
type Suite uint8

const (
	// SuiteGMAC is AES-256-GCM: fastest where the CPU has AES and
	// carry-less multiply instructions.
	SuiteGMAC Suite = 1
	// SuitePoly1305 is ChaCha20-Poly1305: fast in portable code.
	SuitePoly1305 Suite = 2
)

func (s Suite) String() string {
	switch s {
	case SuiteGMAC:
		return "AES-256-GCM"
	case SuitePoly1305:
		return "ChaCha20-Poly1305"
	}
	return fmt.Sprintf("suite %d", uint8(s))
}

// ChooseSuite is the session's suite given the two HELLOs: GMAC if both
// ends have the instructions that make it fast, else Poly1305 (one slow
// end would make every frame wait on it). Both ends decide alike.
func ChooseSuite(a, b Hello) Suite {
	if a.Flags&HelloFastGMAC != 0 && b.Flags&HelloFastGMAC != 0 {
		return SuiteGMAC
	}
	return SuitePoly1305
}

// SetSessionKey switches the codec from PSK-HMAC (HELLO only) to the
// suite's MAC under the session key.
func (c *Codec) SetSessionKey(k []byte, s Suite) error {
	var (
		a   cipher.AEAD
		err error
	)
	switch s {
	case SuiteGMAC:
		var b cipher.Block
		if b, err = aes.NewCipher(k); err == nil {
			a, err = cipher.NewGCM(b)
		}
	case SuitePoly1305:
		a, err = chacha20poly1305.New(k)
	default:
		err = fmt.Errorf("wire: unknown MAC suite %d", s)
	}
	if err != nil {
		return err
	}
	c.gcm = a
	return nil
}

// Start appends an empty header to dst; the caller appends the payload and
// then calls Seal on the whole slice.
func Start(dst []byte) []byte {
	return append(dst, make([]byte, HeaderSize)...)
}

// Seal fills in the header of buf (made by Start plus a payload appended)
// and appends the MAC. It returns the complete frame.
func (c *Codec) Seal(buf []byte, t Type, epoch uint64) ([]byte, error) {
	n := len(buf) - HeaderSize
	if n < 0 {
		return nil, ErrTruncated
	}
	if n > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	if c.gcm == nil && t != THello {
		return nil, ErrNoSession
	}
	buf[0], buf[1], buf[2], buf[3] = magic[0], magic[1], Version, byte(t)
	binary.LittleEndian.PutUint32(buf[4:], uint32(n))
	binary.LittleEndian.PutUint64(buf[8:], c.sendSeq)
	binary.LittleEndian.PutUint64(buf[16:], epoch)
	buf = append(buf, c.tag(c.out, c.sendSeq, buf, &c.nonceTx)...)
	c.sendSeq++
	return buf, nil
}

// Append seals a frame with the given payload onto dst.
func (c *Codec) Append(dst []byte, t Type, epoch uint64, payload []byte) ([]byte, error) {
	start := len(dst)
	dst = Start(dst)
	dst = append(dst, payload...)
	f, err := c.Seal(dst[start:], t, epoch)
	if err != nil {
		return dst[:start], err
	}
	return append(dst[:start], f...), nil
}

func (c *Codec) tag(dir Direction, seq uint64, data []byte, nonce *[12]byte) []byte {
	if c.gcm == nil {
		m := hmac.New(sha256.New, c.psk)
		var d [4]byte
		binary.LittleEndian.PutUint32(d[:], uint32(dir))
		m.Write(d[:])
		m.Write(data)
		return m.Sum(nil)[:TagSize]
	}
	binary.LittleEndian.PutUint64(nonce[4:], seq)
	var out [TagSize]byte
	return c.gcm.Seal(out[:0], nonce[:], nil, data)
}

// parseHeader checks the fixed header and returns the payload length.
func parseHeader(h []byte) (Type, int, error) {
	if h[0] != magic[0] || h[1] != magic[1] {
		return 0, 0, fmt.Errorf("%w: % x", ErrBadMagic, h[:2])
	}
	if h[2] != Version {
		return 0, 0, fmt.Errorf("%w: %d", ErrVersion, h[2])
	}
	t := Type(h[3])
	if t == 0 || t > maxType {
		return 0, 0, fmt.Errorf("%w: %d", ErrType, h[3])
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n > MaxPayload {
		return 0, 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	return t, int(n), nil
}

// Open checks one complete frame (exactly one, no trailing bytes) and returns
// it. On any error nothing about the codec changes.
func (c *Codec) Open(b []byte) (Frame, error) {
	if len(b) < Overhead {
		return Frame{}, fmt.Errorf("%w: %d bytes", ErrTruncated, len(b))
	}
	_, n, err := parseHeader(b)
	if err != nil {
		return Frame{}, err
	}
	if len(b) < Overhead+n {
		return Frame{}, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), Overhead+n)
	}
	if len(b) > Overhead+n {
		return Frame{}, fmt.Errorf("%w: %d extra", ErrTrailing, len(b)-Overhead-n)
	}
	return c.check(b, n)
}

func (c *Codec) check(b []byte, n int) (Frame, error) {
	t := Type(b[3])
	seq := binary.LittleEndian.Uint64(b[8:])
	if c.gcm == nil && t != THello {
		return Frame{}, fmt.Errorf("%w: got %v", ErrNoSession, t)
	}
	tag := c.tag(c.in, seq, b[:HeaderSize+n], &c.nonceRx)
	if !hmac.Equal(tag, b[HeaderSize+n:HeaderSize+n+TagSize]) {
		return Frame{}, fmt.Errorf("%w: %v seq %d", ErrForged, t, seq)
	}
	if seq != c.recvSeq {
		return Frame{}, fmt.Errorf("%w: %v seq %d, want %d", ErrReplay, t, seq, c.recvSeq)
	}
	c.recvSeq++
	return Frame{Type: t, Seq: seq, Epoch: binary.LittleEndian.Uint64(b[16:]), Payload: b[HeaderSize : HeaderSize+n]}, nil
}

// Reader reads frames from a stream into reusable buffers.
type Reader struct {
	r    io.Reader
	c    *Codec
	bufs [][]byte
	i    int
	buf  []byte
}

// NewReader returns a frame reader over r using codec c for the receive
// side; a payload is valid until the next call to Next.
func NewReader(r io.Reader, c *Codec) *Reader { return NewReaderRing(r, c, 1) }

// NewReaderRing is NewReader with n buffers used in turn: a payload stays
// valid for n-1 further calls, so a reading goroutine can run ahead of the
// one applying frames.
func NewReaderRing(r io.Reader, c *Codec, n int) *Reader {
	rd := &Reader{r: r, c: c, bufs: make([][]byte, n)}
	for i := range rd.bufs {
		rd.bufs[i] = make([]byte, 0, 64<<10)
	}
	return rd
}

// NextRaw reads one frame without checking more than its header (magic,
// version, type, length limit); Codec.Open checks the rest. It lets a
// receiver read the next frame while another goroutine checks this one.
// The bytes are valid for len(ring)-1 further calls. A clean end of stream
// between frames is io.EOF; a stream error mid-frame is ErrTruncated
// wrapping the cause.
func (r *Reader) NextRaw() ([]byte, error) {
	r.buf = r.bufs[r.i]
	defer func() { r.bufs[r.i] = r.buf; r.i = (r.i + 1) % len(r.bufs) }()
	r.buf = r.buf[:HeaderSize]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: header: %w", ErrTruncated, err)
	}
	_, n, err := parseHeader(r.buf)
	if err != nil {
		return nil, err
	}
	total := Overhead + n
	if cap(r.buf) < total {
		nb := make([]byte, total)
		copy(nb, r.buf)
		r.buf = nb
	}
	r.buf = r.buf[:total]
	if _, err := io.ReadFull(r.r, r.buf[HeaderSize:]); err != nil {
		return nil, fmt.Errorf("%w: %d-byte payload: %w", ErrTruncated, n, err)
	}
	return r.buf, nil
}

// Next reads and checks one frame. The payload is valid until the next call.
// A stream error mid-frame is reported as ErrTruncated wrapping the cause
// (errors.Is finds both, e.g. ErrTruncated and io.ErrUnexpectedEOF).
func (r *Reader) Next() (Frame, error) {
	r.buf = r.bufs[r.i]
	defer func() { r.bufs[r.i] = r.buf; r.i = (r.i + 1) % len(r.bufs) }()
	r.buf = r.buf[:HeaderSize]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF
		}
		return Frame{}, fmt.Errorf("%w: header: %w", ErrTruncated, err)
	}
	_, n, err := parseHeader(r.buf)
	if err != nil {
		return Frame{}, err
	}
	total := Overhead + n
	if cap(r.buf) < total {
		nb := make([]byte, total)
		copy(nb, r.buf)
		r.buf = nb
	}
	r.buf = r.buf[:total]
	if _, err := io.ReadFull(r.r, r.buf[HeaderSize:]); err != nil {
		return Frame{}, fmt.Errorf("%w: %d-byte payload: %w", ErrTruncated, n, err)
	}
	return r.c.check(r.buf, n)
}
