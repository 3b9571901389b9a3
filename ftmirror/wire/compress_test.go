package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

var codecs = []struct {
	name  string
	codec uint8
}{{"s2", CodecS2}, {"zstd", CodecZstd}}

// Page contents the compressor meets: an almost empty page, text (code and
// data compress like it), and random bytes (encrypted or compressed data).
func zeroishPage(seed uint64) []byte {
	p := make([]byte, PageSize)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < 8; i++ {
		binary.LittleEndian.PutUint64(p[r.IntN(PageSize/8)*8:], r.Uint64())
	}
	return p
}

var words = []string{"the ", "guest ", "kernel ", "page ", "epoch ", "mirror ", "0x7f3a ", "return ", "if ", "err ", "!= ", "nil ", "{\n", "}\n", "\t"}

func textPage(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	p := make([]byte, 0, PageSize+16)
	for len(p) < PageSize {
		p = append(p, words[r.IntN(len(words))]...)
	}
	return p[:PageSize]
}

func randomPage(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	p := make([]byte, PageSize)
	for i := 0; i < PageSize; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
	return p
}

var pageKinds = []struct {
	name string
	page func(uint64) []byte
}{{"zeroish", zeroishPage}, {"text", textPage}, {"random", randomPage}}

// group builds a GROUP payload of n full pages made by page.
func group(n int, page func(uint64) []byte) []byte {
	var g GroupWriter
	g.Reset(nil, 0)
	for i := 0; i < n; i++ {
		copy(g.Full(uint32(i)), page(uint64(i)))
	}
	// Finish for a payload without a frame header in front.
	binary.LittleEndian.PutUint32(g.Buf[4:], uint32(g.count))
	return g.Buf
}

func TestGroupZRoundTrip(t *testing.T) {
	dz, err := NewDecompressor()
	if err != nil {
		t.Fatal(err)
	}
	defer dz.Close()
	for _, c := range codecs {
		zc, err := NewCompressor(c.codec)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range pageKinds {
			raw := group(64, k.page)
			z := zc.AppendGroupZ(nil, raw)
			got, err := dz.GroupZ(nil, z)
			if err != nil {
				t.Fatalf("%s %s: %v", c.name, k.name, err)
			}
			if !bytes.Equal(got, raw) {
				t.Fatalf("%s %s: round trip changed the group", c.name, k.name)
			}
			if _, recs, err := ParseGroup(got, 64, nil); err != nil || len(recs) != 64 {
				t.Fatalf("%s %s: %d records, %v", c.name, k.name, len(recs), err)
			}
			t.Logf("%s %s: %d -> %d bytes (%.3f)", c.name, k.name, len(raw), len(z), float64(len(z))/float64(len(raw)))
			// What the engine relies on: zero-ish and text pages compress
			// well, random ones do not.
			switch ratio := float64(len(z)) / float64(len(raw)); {
			case k.name == "random" && ratio < 0.9:
				t.Errorf("%s compressed random pages to %.2f", c.name, ratio)
			case k.name != "random" && ratio > 0.5:
				t.Errorf("%s compressed %s pages only to %.2f", c.name, k.name, ratio)
			}
		}
	}
}

// A buffer given to GroupZ is reused when large enough.
func TestGroupZReusesBuffer(t *testing.T) {
	dz, _ := NewDecompressor()
	defer dz.Close()
	for _, c := range codecs {
		zc, _ := NewCompressor(c.codec)
		raw := group(4, textPage)
		buf := make([]byte, 0, len(raw)+100)
		got, err := dz.GroupZ(buf, zc.AppendGroupZ(nil, raw))
		if err != nil || &got[0] != &buf[:1][0] {
			t.Fatalf("%s: buffer not reused (%v)", c.name, err)
		}
	}
}

func TestGroupZRefusals(t *testing.T) {
	raw := group(8, textPage)
	s2z, _ := NewCompressor(CodecS2)
	zsz, _ := NewCompressor(CodecZstd)
	okS2, okZstd := s2z.AppendGroupZ(nil, raw), zsz.AppendGroupZ(nil, raw)
	hdr := func(codec uint8, rawLen uint32, z []byte) []byte {
		return append(binary.LittleEndian.AppendUint32([]byte{codec}, rawLen), z...)
	}
	// A bomb: 64 MiB of zeros compress to a few kilobytes.
	big := make([]byte, 64<<20)
	bombS2 := s2.Encode(nil, big)
	zenc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	bombZstd := zenc.EncodeAll(big, nil)
	// A bomb in a zstd frame without a content size (a streaming
	// encoder's), and two frames back to back.
	var stream bytes.Buffer
	zw, _ := zstd.NewWriter(&stream)
	zw.Write(big)
	zw.Close()
	var h zstd.Header
	if err := h.Decode(stream.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("streamed zstd frame: %v, has a content size: %v", err, h.HasFCS)
	}
	twoFrames := append(zenc.EncodeAll(raw, nil), zenc.EncodeAll(raw, nil)...)
	tests := []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"short header", []byte{CodecS2, 1, 0}},
		{"unknown codec", hdr(7, uint32(len(raw)), okS2[zHeaderSize:])},
		{"codec zero", hdr(0, uint32(len(raw)), okS2[zHeaderSize:])},
		{"raw length over MaxPayload", hdr(CodecS2, MaxPayload+1, okS2[zHeaderSize:])},
		{"s2 length disagrees", hdr(CodecS2, uint32(len(raw)-1), okS2[zHeaderSize:])},
		{"s2 truncated", okS2[:len(okS2)-10]},
		{"s2 garbage", hdr(CodecS2, 100, bytes.Repeat([]byte{0xff}, 50))},
		{"s2 bomb", hdr(CodecS2, MaxPayload, bombS2)},
		{"s2 bomb claiming small", hdr(CodecS2, 4096, bombS2)},
		{"zstd length disagrees", hdr(CodecZstd, uint32(len(raw)+1), okZstd[zHeaderSize:])},
		{"zstd truncated", okZstd[:len(okZstd)-5]},
		{"zstd garbage", hdr(CodecZstd, 100, bytes.Repeat([]byte{0x28}, 50))},
		{"zstd bomb", hdr(CodecZstd, MaxPayload, bombZstd)},
		{"zstd bomb claiming small", hdr(CodecZstd, 4096, bombZstd)},
		{"zstd two frames", hdr(CodecZstd, uint32(len(raw)), twoFrames)},
		{"zstd bomb without content size", hdr(CodecZstd, 4096, stream.Bytes())},
		{"zstd bomb without content size, max", hdr(CodecZstd, MaxPayload, stream.Bytes())},
		{"s2 data as zstd", hdr(CodecZstd, uint32(len(raw)), okS2[zHeaderSize:])},
		{"zstd data as s2", hdr(CodecS2, uint32(len(raw)), okZstd[zHeaderSize:])},
	}
	dz, _ := NewDecompressor()
	defer dz.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, 0, 64<<10)
			out, err := dz.GroupZ(buf, tt.p)
			if !errors.Is(err, ErrBadCompressed) {
				t.Fatalf("accepted (%d bytes out) or wrong error: %v", len(out), err)
			}
		})
	}
	// And the good ones still decode after all that.
	for _, p := range [][]byte{okS2, okZstd} {
		if got, err := dz.GroupZ(nil, p); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("good payload after refusals: %v", err)
		}
	}
}

// FuzzGroupZ feeds arbitrary GROUPZ payloads to the decompressor (which
// must refuse or return exactly the raw length it was told, never more
// than MaxPayload) and arbitrary groups through both compressors (which
// must round-trip them).
func FuzzGroupZ(f *testing.F) {
	raw := group(2, textPage)
	for _, c := range codecs {
		zc, _ := NewCompressor(c.codec)
		f.Add(zc.AppendGroupZ(nil, raw))
		f.Add(zc.AppendGroupZ(nil, []byte("short")))
	}
	f.Add([]byte{CodecS2, 0, 0, 0x80, 0})
	f.Add([]byte{CodecZstd, 0xff, 0xff, 0xff, 0xff, 0x28, 0xb5, 0x2f, 0xfd})
	dz, err := NewDecompressor()
	if err != nil {
		f.Fatal(err)
	}
	zcs := map[uint8]*Compressor{}
	for _, c := range codecs {
		zcs[c.codec], _ = NewCompressor(c.codec)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		out, err := dz.GroupZ(nil, p)
		if err == nil {
			if want := binary.LittleEndian.Uint32(p[1:]); uint32(len(out)) != want || want > MaxPayload {
				t.Fatalf("inflated %d bytes, header says %d", len(out), want)
			}
		} else if !errors.Is(err, ErrBadCompressed) {
			t.Fatalf("refusal without ErrBadCompressed: %v", err)
		}
		for _, c := range codecs {
			got, err := dz.GroupZ(nil, zcs[c.codec].AppendGroupZ(nil, p))
			if err != nil || !bytes.Equal(got, p) {
				t.Fatalf("%s round trip: %v", c.name, err)
			}
		}
	})
}

// BenchmarkGroupZ measures compression and decompression of a 512 KiB
// group (the engine's default GroupBytes) of each page type; b.SetBytes
// counts the raw group, so MB/s is raw bytes per second. cpu-MB/s divides
// by the benchmark thread's CPU time instead of the wall time, which on a
// loaded machine is mostly time spent waiting for a CPU.
func BenchmarkGroupZ(b *testing.B) {
	cpuRate := func(b *testing.B, n int, start time.Duration) {
		if d := threadCPU() - start; d > 0 {
			b.ReportMetric(float64(n)*float64(b.N)/d.Seconds()/1e6, "cpu-MB/s")
		}
	}
	dz, _ := NewDecompressor()
	defer dz.Close()
	for _, c := range codecs {
		zc, _ := NewCompressor(c.codec)
		for _, k := range pageKinds {
			raw := group(128, k.page)
			z := zc.AppendGroupZ(nil, raw)
			ratio := float64(len(z)) / float64(len(raw))
			b.Run(fmt.Sprintf("compress/%s/%s", c.name, k.name), func(b *testing.B) {
				b.SetBytes(int64(len(raw)))
				runtime.LockOSThread() // threadCPU is this thread's
				defer runtime.UnlockOSThread()
				var dst []byte
				start := threadCPU()
				for b.Loop() {
					dst = zc.AppendGroupZ(dst[:0], raw)
				}
				cpuRate(b, len(raw), start)
				b.ReportMetric(ratio, "ratio")
			})
			b.Run(fmt.Sprintf("decompress/%s/%s", c.name, k.name), func(b *testing.B) {
				b.SetBytes(int64(len(raw)))
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				buf := make([]byte, len(raw))
				start := threadCPU()
				for b.Loop() {
					if _, err := dz.GroupZ(buf, z); err != nil {
						b.Fatal(err)
					}
				}
				cpuRate(b, len(raw), start)
				b.ReportMetric(ratio, "ratio")
			})
		}
	}
}
