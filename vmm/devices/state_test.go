package devices

import (
	"errors"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	e := NewEncoder("TEST", 3)
	e.U8(7)
	e.Bool(true)
	e.U16(0xBEEF)
	e.U32(0xDEADBEEF)
	e.U64(1 << 60)
	e.I64(-5)
	e.Bytes([]byte("abc"))
	blob := e.Finish()

	d := NewDecoder(blob, "TEST", 3)
	if got := d.U8(); got != 7 {
		t.Errorf("U8 = %d", got)
	}
	if !d.Bool() {
		t.Error("Bool = false")
	}
	if got := d.U16(); got != 0xBEEF {
		t.Errorf("U16 = %#x", got)
	}
	if got := d.U32(); got != 0xDEADBEEF {
		t.Errorf("U32 = %#x", got)
	}
	if got := d.U64(); got != 1<<60 {
		t.Errorf("U64 = %#x", got)
	}
	if got := d.I64(); got != -5 {
		t.Errorf("I64 = %d", got)
	}
	if got := string(d.Bytes(16)); got != "abc" {
		t.Errorf("Bytes = %q", got)
	}
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestStateRefused(t *testing.T) {
	e := NewEncoder("TEST", 1)
	e.U32(1)
	e.Bytes([]byte("xyz"))
	good := e.Finish()
	for _, tc := range []struct {
		name    string
		blob    []byte
		magic   string
		version uint16
	}{
		{"short header", good[:5], "TEST", 1},
		{"other kind", good, "UART", 1},
		{"other version", good, "TEST", 2},
		{"truncated body", good[:len(good)-1], "TEST", 1},
		{"trailing", append(append([]byte(nil), good...), 0), "TEST", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(tc.blob, tc.magic, tc.version)
			d.U32()
			d.Bytes(16)
			if err := d.Finish(); !errors.Is(err, ErrBadState) {
				t.Fatalf("err = %v, want ErrBadState", err)
			}
		})
	}
	// A byte string longer than the caller allows.
	d := NewDecoder(good, "TEST", 1)
	d.U32()
	d.Bytes(2)
	if err := d.Finish(); !errors.Is(err, ErrBadState) {
		t.Fatalf("long string: err = %v", err)
	}
}

func FuzzDecoder(f *testing.F) {
	e := NewEncoder("TEST", 1)
	e.U64(9)
	e.Bytes([]byte("hello"))
	f.Add(e.Finish())
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(b, "TEST", 1)
		d.U64()
		d.Bytes(1 << 20)
		_ = d.Finish() // must not panic
	})
}
