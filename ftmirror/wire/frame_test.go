package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

// pair returns a sending and a receiving codec with a session key set
// (GMAC).
func pair(t testing.TB) (tx, rx *Codec) { return pairSuite(t, SuiteGMAC) }

// suites are the MAC suites every codec test runs with.
var suites = []Suite{SuiteGMAC, SuitePoly1305}

func pairSuite(t testing.TB, s Suite) (tx, rx *Codec) {
	tx, _ = NewCodec(key(1), PrimaryToSecondary)
	rx, _ = NewCodec(key(1), SecondaryToPrimary)
	sk := SessionKey(key(1), []byte("a"), []byte("b"))
	if err := tx.SetSessionKey(sk, s); err != nil {
		t.Fatal(err)
	}
	if err := rx.SetSessionKey(sk, s); err != nil {
		t.Fatal(err)
	}
	return tx, rx
}

func TestRoundTrip(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			tx, rx := pairSuite(t, suite)
			for i, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{7}, 70000)} {
				f, err := tx.Append(nil, TGroup, uint64(i+5), p)
				if err != nil {
					t.Fatal(err)
				}
				got, err := rx.Open(f)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if got.Type != TGroup || got.Epoch != uint64(i+5) || got.Seq != uint64(i) || !bytes.Equal(got.Payload, p) {
					t.Fatalf("frame %d: got %+v", i, got)
				}
			}
		})
	}
}

// TestChooseSuite: GMAC only when both ends do it fast; both ends choose
// alike whichever HELLO is "a".
func TestChooseSuite(t *testing.T) {
	for _, tc := range []struct {
		a, b uint8
		want Suite
	}{
		{HelloFastGMAC, HelloFastGMAC, SuiteGMAC},
		{HelloFastGMAC, 0, SuitePoly1305},
		{0, HelloFastGMAC, SuitePoly1305},
		{0, 0, SuitePoly1305},
	} {
		a, b := Hello{Flags: tc.a}, Hello{Flags: tc.b}
		if got, back := ChooseSuite(a, b), ChooseSuite(b, a); got != tc.want || back != got {
			t.Errorf("flags %d, %d: %v and %v, want %v", tc.a, tc.b, got, back, tc.want)
		}
	}
	if err := new(Codec).SetSessionKey(key(1), 9); err == nil {
		t.Error("an unknown suite was accepted")
	}
}

func TestRefusals(t *testing.T) {
	payload := []byte("some page records")
	tests := []struct {
		name   string
		mutate func(f []byte, tx *Codec) []byte
		want   error
	}{
		{"flipped payload bit", func(f []byte, _ *Codec) []byte { f[HeaderSize+2] ^= 1; return f }, ErrForged},
		{"flipped last payload bit", func(f []byte, _ *Codec) []byte { f[len(f)-TagSize-1] ^= 0x80; return f }, ErrForged},
		{"tampered epoch", func(f []byte, _ *Codec) []byte { f[16]++; return f }, ErrForged},
		{"tampered sequence", func(f []byte, _ *Codec) []byte { f[8]++; return f }, ErrForged},
		{"tampered tag", func(f []byte, _ *Codec) []byte { f[len(f)-1] ^= 1; return f }, ErrForged},
		{"truncated", func(f []byte, _ *Codec) []byte { return f[:len(f)-1] }, ErrTruncated},
		{"too short", func(f []byte, _ *Codec) []byte { return f[:10] }, ErrTruncated},
		{"trailing", func(f []byte, _ *Codec) []byte { return append(f, 0) }, ErrTrailing},
		{"bad magic", func(f []byte, _ *Codec) []byte { f[0] = 'x'; return f }, ErrBadMagic},
		{"bad version", func(f []byte, _ *Codec) []byte { f[2] = 9; return f }, ErrVersion},
		{"bad type", func(f []byte, _ *Codec) []byte { f[3] = 99; return f }, ErrType},
		{"huge length", func(f []byte, _ *Codec) []byte { binary.LittleEndian.PutUint32(f[4:], MaxPayload+1); return f }, ErrTooLarge},
		{"wrong key", func(_ []byte, _ *Codec) []byte {
			o, _ := NewCodec(key(2), PrimaryToSecondary)
			o.SetSessionKey(SessionKey(key(2), []byte("a"), []byte("b")), SuiteGMAC)
			f, _ := o.Append(nil, TGroup, 1, payload)
			return f
		}, ErrForged},
		{"reflected (other direction)", func(_ []byte, _ *Codec) []byte {
			o, _ := NewCodec(key(1), SecondaryToPrimary)
			o.SetSessionKey(SessionKey(key(1), []byte("a"), []byte("b")), SuiteGMAC)
			f, _ := o.Append(nil, TGroup, 1, payload)
			return f
		}, ErrForged},
		{"other suite", func(_ []byte, _ *Codec) []byte {
			o, _ := NewCodec(key(1), PrimaryToSecondary)
			o.SetSessionKey(SessionKey(key(1), []byte("a"), []byte("b")), SuitePoly1305)
			f, _ := o.Append(nil, TGroup, 1, payload)
			return f
		}, ErrForged},
		{"skipped sequence", func(_ []byte, tx *Codec) []byte {
			tx.Append(nil, TGroup, 1, payload) // lost on the way
			f, _ := tx.Append(nil, TGroup, 1, payload)
			return f
		}, ErrReplay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx, rx := pair(t)
			f, _ := tx.Append(nil, TGroup, 1, payload)
			_, err := rx.Open(tc.mutate(f, tx))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if rx.recvSeq != 0 {
				t.Fatalf("refused frame moved the sequence to %d", rx.recvSeq)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	tx, rx := pair(t)
	f1, _ := tx.Append(nil, TAck, 1, nil)
	f2, _ := tx.Append(nil, TAck, 2, nil)
	if _, err := rx.Open(f1); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.Open(f1); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	if _, err := rx.Open(f2); err != nil {
		t.Fatalf("after refused replay: %v", err)
	}
}

func TestHelloNeedsNoSession(t *testing.T) {
	tx, _ := NewCodec(key(1), PrimaryToSecondary)
	rx, _ := NewCodec(key(1), SecondaryToPrimary)
	h := Hello{Role: RolePrimary, Generation: 3, Pages: 10, Flags: HelloFastGMAC}
	f, err := tx.Append(nil, THello, 0, h.Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := rx.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	if h2, err := ParseHello(got.Payload); err != nil || h2 != h {
		t.Fatalf("hello %+v %v", h2, err)
	}
	if _, err := tx.Append(nil, TGroup, 0, nil); !errors.Is(err, ErrNoSession) {
		t.Fatalf("group before session: %v", err)
	}
}

func TestReaderStream(t *testing.T) {
	tx, rx := pair(t)
	var s []byte
	for i := 0; i < 3; i++ {
		s, _ = tx.Append(s, THeartbeat, uint64(i), AppendU64(nil, uint64(i)))
	}
	r := NewReader(bytes.NewReader(s[:len(s)-5]), rx)
	for i := 0; i < 2; i++ {
		f, err := r.Next()
		if err != nil || f.Epoch != uint64(i) {
			t.Fatalf("frame %d: %+v %v", i, f, err)
		}
	}
	if _, err := r.Next(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("cut stream: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(nil), rx).Next(); err != io.EOF {
		t.Fatalf("empty stream: %v", err)
	}
}

func TestGroupAndEnd(t *testing.T) {
	var g GroupWriter
	g.Reset(Start(nil), 4)
	g.Zero(1)
	copy(g.Full(2), bytes.Repeat([]byte{9}, PageSize))
	g.Delta(3, func(b []byte) []byte { return append(b, 1, 2, 3, 4) })
	g.Finish()
	idx, recs, err := ParseGroup(g.Buf[HeaderSize:], 10, nil)
	if err != nil || idx != 4 || len(recs) != 3 {
		t.Fatalf("%d %v %v", idx, recs, err)
	}
	if recs[1].Data[4095] != 9 || string(recs[2].Data) != "\x01\x02\x03\x04" || recs[0].Kind != KindZero {
		t.Fatalf("records %+v", recs)
	}
	if _, _, err := ParseGroup(g.Buf[HeaderSize:], 3, nil); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("pfn beyond memory: %v", err)
	}
	e := End{Groups: 2, Pages: 3, Flags: EndComplete, OutOffset: 77, OutEnd: 90, Out: []byte("hello"),
		Blobs: []Blob{{ID: 1, Version: 2, Data: []byte("cpu")}}}
	e2, err := ParseEnd(e.Append(nil))
	if err != nil || e2.OutOffset != 77 || string(e2.Out) != "hello" || string(e2.Blobs[0].Data) != "cpu" || e2.Blobs[0].Version != 2 {
		t.Fatalf("%+v %v", e2, err)
	}
}

// errReader returns its bytes, then err.
type errReader struct {
	b   []byte
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestReaderWrapsCause checks that a stream error under a frame is wrapped,
// not flattened to text, so callers can tell a lost peer (EOF mid-frame, a
// reset connection) from a protocol error with errors.Is.
func TestReaderWrapsCause(t *testing.T) {
	tx, _ := pair(t)
	f, _ := tx.Append(nil, TGroup, 1, bytes.Repeat([]byte{3}, 100))
	reset := errors.New("connection reset by peer (test)")
	tests := []struct {
		name  string
		bytes []byte
		err   error
		want  []error
	}{
		{"clean EOF", nil, io.EOF, []error{io.EOF}},
		{"EOF mid-header", f[:10], io.EOF, []error{ErrTruncated, io.ErrUnexpectedEOF}},
		{"EOF mid-payload", f[:len(f)/2], io.EOF, []error{ErrTruncated, io.ErrUnexpectedEOF}},
		{"reset mid-header", f[:10], reset, []error{ErrTruncated, reset}},
		{"reset mid-payload", f[:len(f)/2], reset, []error{ErrTruncated, reset}},
		{"reset between frames", nil, reset, []error{ErrTruncated, reset}},
	}
	for _, tc := range tests {
		for _, raw := range []bool{false, true} {
			_, rx := pair(t)
			rd := NewReader(&errReader{b: tc.bytes, err: tc.err}, rx)
			var err error
			if raw {
				_, err = rd.NextRaw()
			} else {
				_, err = rd.Next()
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("%s (raw %v): %v does not wrap %v", tc.name, raw, err, w)
				}
			}
		}
	}
}

// BenchmarkSealOpen seals and opens a 64 KiB GROUP frame with each MAC
// suite: the codec's cost per byte, paid once on each side of the link.
// Run it with GODEBUG=cpu.sse42=off,cpu.aes=off,cpu.pclmulqdq=off for
// QEMU's default CPU (qemu64), which the emulated FT pairs run on.
func BenchmarkSealOpen(b *testing.B) {
	payload := bytes.Repeat([]byte{0x5a}, 64<<10)
	for _, suite := range suites {
		b.Run(suite.String(), func(b *testing.B) {
			tx, rx := pairSuite(b, suite)
			b.SetBytes(int64(len(payload)))
			var buf []byte
			for b.Loop() {
				f, err := tx.Append(buf[:0], TGroup, 1, payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rx.Open(f); err != nil {
					b.Fatal(err)
				}
				buf = f
			}
		})
	}
}
