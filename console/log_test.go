package console

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeClock returns d, then d+step, ...
func fakeClock(d, step time.Duration) func() time.Duration {
	return func() time.Duration { d += step; return d - step }
}

func TestFormatStamp(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                        "[    0.000000]",
		12*time.Second + 345678*time.Microsecond: "[   12.345678]",
		999 * time.Nanosecond:                    "[    0.000000]",
		123456*time.Second + 1*time.Microsecond:  "[123456.000001]",
		-time.Second:                             "[    0.000000]",
		99999*time.Second + 999999*time.Microsecond: "[99999.999999]",
	} {
		if got := FormatStamp(d); got != want {
			t.Errorf("FormatStamp(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestLog(t *testing.T) {
	var out strings.Builder
	l := NewLog(&out, 3, fakeClock(12*time.Second+345678*time.Microsecond, time.Second))
	l.Printf("board", "memory map: %d regions", 10)
	l.Printf("cpu", "two\nlines\n")
	l.Printf("kernel", "last")
	wantOut := "[   12.345678] board: memory map: 10 regions\n" +
		"[   13.345678] cpu: two\n" +
		"[   13.345678] cpu: lines\n" +
		"[   14.345678] kernel: last\n"
	if out.String() != wantOut {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), wantOut)
	}
	wantRing := []string{"[   13.345678] cpu: two", "[   13.345678] cpu: lines", "[   14.345678] kernel: last"}
	if got := l.Lines(); !reflect.DeepEqual(got, wantRing) {
		t.Errorf("ring after wrap = %q, want %q", got, wantRing)
	}
}

func TestLogRingBeforeWrap(t *testing.T) {
	l := NewLog(nil, 4, fakeClock(0, time.Millisecond))
	if got := l.Lines(); len(got) != 0 {
		t.Fatalf("empty log has lines %q", got)
	}
	l.Printf("a", "1")
	l.Printf("b", "2")
	want := []string{"[    0.000000] a: 1", "[    0.001000] b: 2"}
	if got := l.Lines(); !reflect.DeepEqual(got, want) {
		t.Errorf("Lines() = %q, want %q", got, want)
	}
}

func TestLogWriter(t *testing.T) {
	l := NewLog(nil, 8, fakeClock(time.Second, 0))
	w := l.Writer("cpu")
	for _, chunk := range []string{"Genuine", "Intel\nbrand: X", "eon\n", "partial"} {
		w.Write([]byte(chunk))
	}
	want := []string{"[    1.000000] cpu: GenuineIntel", "[    1.000000] cpu: brand: Xeon"}
	if got := l.Lines(); !reflect.DeepEqual(got, want) {
		t.Errorf("Lines() = %q, want %q (an unterminated line waits)", got, want)
	}
}

func TestSinceBootAdvances(t *testing.T) {
	a := SinceBoot()
	time.Sleep(time.Millisecond)
	if b := SinceBoot(); b <= a || a <= 0 {
		t.Errorf("SinceBoot: %v then %v", a, b)
	}
}

func TestCRLF(t *testing.T) {
	tests := []struct {
		writes []string
		want   string
	}{
		{[]string{"a\nb\n"}, "a\r\nb\r\n"},
		{[]string{"already\r\n"}, "already\r\n"},
		{[]string{"split\r", "\n"}, "split\r\n"},
		{[]string{"\n\n"}, "\r\n\r\n"},
		{[]string{"no newline"}, "no newline"},
	}
	for _, tt := range tests {
		var b strings.Builder
		w := CRLF(&b)
		for _, s := range tt.writes {
			if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
				t.Errorf("Write(%q) = %d, %v", s, n, err)
			}
		}
		if b.String() != tt.want {
			t.Errorf("CRLF(%q) = %q, want %q", tt.writes, b.String(), tt.want)
		}
	}
}
