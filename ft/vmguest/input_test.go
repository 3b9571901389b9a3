package vmguest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestParseInput(t *testing.T) {
	for _, c := range []struct {
		name string
		rec  []byte
		seq  uint64
		ok   bool
	}{
		{"frame", AppendInput(nil, 7, []byte("frame")), 7, true},
		{"one byte", AppendInput(nil, 1, []byte{9}), 1, true},
		{"largest", AppendInput(nil, 2, make([]byte, MaxInputFrame)), 2, true},
		{"too large", AppendInput(nil, 2, make([]byte, MaxInputFrame+1)), 0, false},
		{"no frame", AppendInput(nil, 3, nil), 0, false},
		{"short header", []byte{1, 2, 3}, 0, false},
		{"empty", nil, 0, false},
		{"sequence 0", AppendInput(nil, 0, []byte("x")), 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			seq, frame, err := ParseInput(c.rec)
			if !c.ok {
				if !errors.Is(err, ErrBadInput) {
					t.Fatalf("ParseInput = %d, %v; want ErrBadInput", seq, err)
				}
				return
			}
			if err != nil || seq != c.seq || !bytes.Equal(frame, c.rec[8:]) {
				t.Fatalf("ParseInput = %d, %d bytes, %v; want %d", seq, len(frame), err, c.seq)
			}
		})
	}
}

func frameN(i int) []byte { return []byte(fmt.Sprintf("frame %03d", i)) }

// After gives the frames above a checkpoint's sequence number, in order,
// within the log's bound.
func TestInputLogAfter(t *testing.T) {
	l := NewInputLog(4, 1<<20)
	for i := 1; i <= 6; i++ {
		rec := AppendInput(nil, uint64(i), frameN(i))
		if err := l.Add(rec); err != nil {
			t.Fatal(err)
		}
		rec[9] = 'X' // the log keeps a copy
	}
	for _, c := range []struct {
		after uint64
		want  []int
	}{
		{0, []int{3, 4, 5, 6}}, // 1 and 2 were pushed out by the bound
		{2, []int{3, 4, 5, 6}},
		{4, []int{5, 6}},
		{6, nil},
		{9, nil},
	} {
		got, first := l.After(c.after)
		if len(got) != len(c.want) {
			t.Fatalf("After(%d): %d frames, want %d", c.after, len(got), len(c.want))
		}
		for i, w := range c.want {
			if !bytes.Equal(got[i], frameN(w)) {
				t.Errorf("After(%d)[%d] = %q, want %q", c.after, i, got[i], frameN(w))
			}
		}
		if len(c.want) > 0 && first != uint64(c.want[0]) {
			t.Errorf("After(%d) starts at %d, want %d", c.after, first, c.want[0])
		}
	}
	if s := l.Stats(); s.Frames != 4 || s.Evicted != 2 || s.Last != 6 {
		t.Errorf("stats %+v, want 4 frames to seq 6, 2 evicted", s)
	}
}

// The byte bound pushes out the oldest frames too; a lower sequence
// number (a new primary) starts the log again; a bad record is refused
// and leaves the log as it was.
func TestInputLogBoundsAndResets(t *testing.T) {
	l := NewInputLog(100, MaxInputFrame)
	big := make([]byte, MaxInputFrame/2+1)
	for i := 1; i <= 3; i++ {
		if err := l.Add(AppendInput(nil, uint64(i), big)); err != nil {
			t.Fatal(err)
		}
	}
	if got, first := l.After(0); len(got) != 1 || first != 3 {
		t.Fatalf("byte bound: %d frames from %d, want 1 from 3", len(got), first)
	}
	if err := l.Add([]byte{1}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("bad record: %v", err)
	}
	if err := l.Add(AppendInput(nil, 2, []byte("new primary"))); err != nil {
		t.Fatal(err)
	}
	got, first := l.After(0)
	if len(got) != 1 || first != 2 || string(got[0]) != "new primary" {
		t.Fatalf("after a lower number: %d frames from %d", len(got), first)
	}
	if s := l.Stats(); s.Bad != 1 || s.Resets != 1 || s.Evicted != 2 {
		t.Errorf("stats %+v, want 1 bad, 1 reset, 2 evicted", s)
	}
	l.Reset()
	if got, _ := l.After(0); got != nil {
		t.Errorf("after Reset: %d frames", len(got))
	}
}

// FuzzParseInput: no record makes ParseInput panic, and every record it
// accepts is rebuilt exactly by AppendInput.
func FuzzParseInput(f *testing.F) {
	f.Add(AppendInput(nil, 1, []byte("frame")))
	f.Add([]byte{})
	f.Add(make([]byte, 8))
	f.Fuzz(func(t *testing.T, rec []byte) {
		seq, frame, err := ParseInput(rec)
		if err != nil {
			return
		}
		if !bytes.Equal(AppendInput(nil, seq, frame), rec) {
			t.Fatalf("record %x parsed as %d, %x", rec, seq, frame)
		}
		l := NewInputLog(2, MaxInputFrame)
		if err := l.Add(rec); err != nil {
			t.Fatal(err)
		}
		if got, first := l.After(seq - 1); len(got) != 1 || first != seq || !bytes.Equal(got[0], frame) {
			t.Fatalf("log gave %d frames from %d", len(got), first)
		}
	})
}
