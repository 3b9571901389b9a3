package vmguest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"testing"
)

type nicRec struct{ frames [][]byte }

func (n *nicRec) Send(f []byte) error {
	n.frames = append(n.frames, append([]byte(nil), f...))
	return nil
}

// TestStreamRoundTrip: a random mix of serial writes and frames, encoded
// and released in random pieces, comes out as the same console bytes and
// the same frames in order.
func TestStreamRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var stream, console []byte
	var frames [][]byte
	for i := 0; i < 500; i++ {
		if rng.Intn(3) == 0 {
			f := make([]byte, rng.Intn(1600))
			rng.Read(f)
			var err error
			if stream, err = AppendFrame(stream, uint64(len(frames)+1), f); err != nil {
				t.Fatal(err)
			}
			frames = append(frames, f)
		} else {
			b := make([]byte, 1+rng.Intn(MaxSerialRecord+100))
			rng.Read(b)
			stream = AppendSerial(stream, b)
			console = append(console, b...)
		}
	}
	var gotConsole bytes.Buffer
	nic := &nicRec{}
	s := NewSplitter(&gotConsole, nic, 0, 0)
	for off := 0; off < len(stream); {
		n := min(len(stream)-off, 1+rng.Intn(3000))
		if err := s.Release(uint64(off), stream[off:off+n]); err != nil {
			t.Fatalf("release at %d: %v", off, err)
		}
		off += n
	}
	if !bytes.Equal(gotConsole.Bytes(), console) {
		t.Fatalf("console: %d bytes, want %d", gotConsole.Len(), len(console))
	}
	if len(nic.frames) != len(frames) {
		t.Fatalf("%d frames, want %d", len(nic.frames), len(frames))
	}
	for i := range frames {
		if !bytes.Equal(nic.frames[i], frames[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if s.p.Pending() != 0 || s.Offset() != uint64(len(stream)) || s.LastSeq() != uint64(len(frames)) {
		t.Fatalf("splitter at %d (pending %d, seq %d)", s.Offset(), s.p.Pending(), s.LastSeq())
	}
}

// TestSplitterRefuses: a gap, a repeat, a skipped or repeated frame, and
// garbage are each refused, and nothing of them reaches the outside.
func TestSplitterRefuses(t *testing.T) {
	rec := AppendSerial(nil, []byte("hello"))
	f1, _ := AppendFrame(nil, 1, []byte("one"))
	f3, _ := AppendFrame(nil, 3, []byte("three"))
	for _, c := range []struct {
		name string
		feed func(s *Splitter) error
	}{
		{"gap", func(s *Splitter) error { return s.Release(1, rec) }},
		{"repeat", func(s *Splitter) error {
			if err := s.Release(0, rec); err != nil {
				return fmt.Errorf("first: %v (unexpected)", err)
			}
			return s.Release(0, rec)
		}},
		{"frame skipped", func(s *Splitter) error {
			return s.Release(0, append(append([]byte(nil), f1...), f3...))
		}},
		{"version", func(s *Splitter) error { return s.Release(0, []byte{0x21, 1, 0, 0, 0, 'x'}) }},
		{"kind", func(s *Splitter) error { return s.Release(0, []byte{0x13, 1, 0, 0, 0, 'x'}) }},
		{"length", func(s *Splitter) error { return s.Release(0, []byte{0x11, 0xff, 0xff, 0, 0}) }},
		{"empty serial", func(s *Splitter) error { return s.Release(0, []byte{0x11, 0, 0, 0, 0}) }},
	} {
		var con bytes.Buffer
		nic := &nicRec{}
		s := NewSplitter(&con, nic, 0, 0)
		err := c.feed(s)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if c.name == "frame skipped" && (len(nic.frames) != 1 || !errors.Is(err, ErrBadRecord)) {
			t.Errorf("%s: %v, %d frames out (want the first only)", c.name, err, len(nic.frames))
		}
		if c.name == "version" || c.name == "kind" || c.name == "length" || c.name == "empty serial" {
			if !errors.Is(err, ErrBadRecord) || con.Len() != 0 {
				t.Errorf("%s: %v, console %q", c.name, err, con.Bytes())
			}
		}
	}
	if _, err := AppendFrame(nil, 1, make([]byte, MaxFrameRecord+1)); err == nil {
		t.Error("oversized frame accepted")
	}
}

// FuzzParser: the parser never panics, and whatever it accepts re-encodes
// to exactly the bytes it consumed, however the input is split.
func FuzzParser(f *testing.F) {
	fr, _ := AppendFrame(AppendSerial(nil, []byte("ab")), 7, []byte("frame"))
	f.Add(fr, uint8(3))
	f.Add([]byte{0x11, 1, 0, 0, 0, 'x', 0x12}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		var whole, split Parser
		var a, c []byte
		collect := func(dst *[]byte) func(Record) error {
			return func(r Record) error {
				var err error
				switch r.Kind {
				case KindSerial:
					*dst = AppendSerial(*dst, r.Data)
				case KindFrame:
					*dst, err = AppendFrame(*dst, r.Seq, r.Data)
				default:
					t.Fatalf("kind %d delivered", r.Kind)
				}
				return err
			}
		}
		errW := whole.Feed(b, collect(&a))
		k := min(int(cut), len(b))
		errS := split.Feed(b[:k], collect(&c))
		if errS == nil {
			errS = split.Feed(b[k:], collect(&c))
		}
		if (errW == nil) != (errS == nil) || !bytes.Equal(a, c) {
			t.Fatalf("whole %v (%d bytes) vs split at %d %v (%d bytes)", errW, len(a), k, errS, len(c))
		}
		if errW == nil && !bytes.Equal(a, b[:len(b)-whole.Pending()]) {
			t.Fatalf("re-encoding differs from the input")
		}
	})
}
