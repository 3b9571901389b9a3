package vmguest

import (
	"bytes"
	"strings"
	"testing"
)

// writes records each Write the buffer makes.
type writes struct{ got []string }

func (w *writes) Write(p []byte) (int, error) { w.got = append(w.got, string(p)); return len(p), nil }

func TestLineBuffer(t *testing.T) {
	long := strings.Repeat("x", MaxLine)
	cases := []struct {
		in   []string
		want []string
	}{
		{[]string{"ab", "c\n"}, []string{"abc\n"}},
		{[]string{"a\nb", "\nc"}, []string{"a\n", "b\n"}},
		{[]string{"a\nb\nc"}, []string{"a\nb\n"}},
		{[]string{long[:100], long[100:]}, []string{long}},
	}
	for _, c := range cases {
		w := &writes{}
		l := NewLineBuffer(w)
		for _, s := range c.in {
			if n, err := l.Write([]byte(s)); n != len(s) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", s, n, err)
			}
		}
		if strings.Join(w.got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q: wrote %q, want %q", c.in, w.got, c.want)
		}
	}
}

// TestLineBufferRestore: the partial line travels in the state and a
// restored buffer completes it as the saved one would.
func TestLineBufferRestore(t *testing.T) {
	a, b := &writes{}, &writes{}
	la := NewLineBuffer(a)
	la.Write([]byte("done\ntick 5"))
	st, err := la.Save()
	if err != nil {
		t.Fatal(err)
	}
	lb := NewLineBuffer(b)
	if err := lb.Restore(st); err != nil {
		t.Fatal(err)
	}
	la.Write([]byte("7\n"))
	lb.Write([]byte("7\n"))
	if a.got[len(a.got)-1] != "tick 57\n" || len(b.got) != 1 || b.got[0] != "tick 57\n" {
		t.Fatalf("primary %q, restored %q", a.got, b.got)
	}
	bad := append([]byte(nil), st...)
	bad[len(bad)-1] ^= 0xff
	if err := lb.Restore(bad[:len(bad)-1]); err == nil {
		t.Error("a truncated state was accepted")
	}
	if err := lb.Restore(bytes.Repeat([]byte{0}, 3)); err == nil {
		t.Error("garbage was accepted")
	}
}

// FuzzLineBufferRestore: any state is either refused, leaving the buffer
// as it was, or taken and saved back unchanged.
func FuzzLineBufferRestore(f *testing.F) {
	l := NewLineBuffer(&writes{})
	l.Write([]byte("done\npartial"))
	st, _ := l.Save()
	f.Add(st)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		w := &writes{}
		l := NewLineBuffer(w)
		l.Write([]byte("keep"))
		before, _ := l.Save()
		if err := l.Restore(b); err != nil {
			if after, _ := l.Save(); !bytes.Equal(after, before) {
				t.Fatalf("a refused state changed the buffer")
			}
			return
		}
		after, _ := l.Save()
		l2 := NewLineBuffer(w)
		if err := l2.Restore(after); err != nil {
			t.Fatalf("its own state refused: %v", err)
		}
		again, _ := l2.Save()
		if !bytes.Equal(again, after) {
			t.Fatalf("state not stable across save/restore")
		}
	})
}
