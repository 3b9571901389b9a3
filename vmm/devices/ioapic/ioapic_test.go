package ioapic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// recorder is a MessageSink that keeps what it is sent.
type recorder struct{ msgs []devices.Message }

func (r *recorder) Deliver(m devices.Message) { r.msgs = append(r.msgs, m) }

func (r *recorder) take() []devices.Message {
	m := r.msgs
	r.msgs = nil
	return m
}

func write(a *IOAPIC, reg uint8, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(reg))
	a.MMIOWrite(IOREGSEL, b[:])
	binary.LittleEndian.PutUint32(b[:], v)
	a.MMIOWrite(IOWIN, b[:])
}

func read(a *IOAPIC, reg uint8) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(reg))
	a.MMIOWrite(IOREGSEL, b[:])
	a.MMIORead(IOWIN, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func setEntry(a *IOAPIC, n int, e uint64) {
	write(a, IOREDTBL+2*uint8(n)+1, uint32(e>>32))
	write(a, IOREDTBL+2*uint8(n), uint32(e))
}

func entry(a *IOAPIC, n int) uint64 {
	return uint64(read(a, IOREDTBL+2*uint8(n)+1))<<32 | uint64(read(a, IOREDTBL+2*uint8(n)))
}

func TestRegisters(t *testing.T) {
	a := New(2, &recorder{})
	if got := read(a, IOAPICID); got != 2<<24 {
		t.Errorf("IOAPICID = %#x, want %#x", got, 2<<24)
	}
	if got := read(a, IOAPICVER); got != 0x170011 {
		t.Errorf("IOAPICVER = %#x, want 0x170011", got)
	}
	write(a, IOAPICID, 0x0F000000|0xFFFF)
	if got := read(a, IOAPICID); got != 0x0F000000 {
		t.Errorf("IOAPICID after write = %#x, want 0x0F000000", got)
	}
	if got := read(a, IOAPICARB); got != 0x0F000000 {
		t.Errorf("IOAPICARB = %#x", got)
	}
	for n := 0; n < NumPins; n++ {
		if got := entry(a, n); got != EntryMasked {
			t.Fatalf("entry %d at reset = %#x, want masked", n, got)
		}
	}
	// Read-only and reserved bits do not stick.
	setEntry(a, 3, 0xFFFFFFFF_FFFFFFFF)
	if got, want := entry(a, 3), uint64(0xFF000000_0001AFFF); got != want {
		t.Errorf("entry 3 = %#x, want %#x", got, want)
	}
	// IOREGSEL reads back; a register past the table reads zero.
	var b [4]byte
	write(a, 0x40, 0x1234)
	a.MMIORead(IOREGSEL, b[:])
	if got := binary.LittleEndian.Uint32(b[:]); got != 0x40 {
		t.Errorf("IOREGSEL = %#x", got)
	}
	if got := read(a, 0x40); got != 0 {
		t.Errorf("register 0x40 = %#x", got)
	}
}

func TestEdge(t *testing.T) {
	r := &recorder{}
	a := New(0, r)
	setEntry(a, 4, 0x03<<56|0x34) // fixed, physical, edge, high, dest 3
	p := a.Pin(4)
	p.Set(true)
	p.Set(true) // no new edge
	want := []devices.Message{{Dest: 3, Vector: 0x34}}
	if got := r.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("rising edge sent %+v, want %+v", got, want)
	}
	p.Set(false)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("falling edge sent %+v", got)
	}
	// A rising edge while masked is sent on unmask, once.
	setEntry(a, 4, EntryMasked|0x34)
	p.Set(true)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("masked edge sent %+v", got)
	}
	setEntry(a, 4, 0x34|EntryDestLogical|1<<56)
	want = []devices.Message{{Dest: 1, DestLogical: true, Vector: 0x34}}
	if got := r.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("unmask sent %+v, want %+v", got, want)
	}
	setEntry(a, 4, 0x35)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("second unmask sent %+v", got)
	}
	// Polarity does not invert the (logical) input level.
	setEntry(a, 5, EntryActiveLow|0x40)
	q := a.Pin(5)
	q.Set(true)
	q.Set(false)
	if got := r.take(); len(got) != 1 || got[0].Vector != 0x40 {
		t.Fatalf("active-low entry: rising request sent %+v", got)
	}
}

func TestLevelRemoteIRR(t *testing.T) {
	r := &recorder{}
	a := New(0, r)
	setEntry(a, 10, EntryLevel|EntryActiveLow|0x51)
	p := a.Pin(10)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("idle pin sent %+v", got)
	}
	p.Set(true)
	want := []devices.Message{{Vector: 0x51, Level: true}}
	if got := r.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("asserted level sent %+v, want %+v", got, want)
	}
	if entry(a, 10)&EntryRemoteIRR == 0 {
		t.Fatal("Remote IRR not set after delivery")
	}
	a.EOI(0x52) // another vector: nothing
	if entry(a, 10)&EntryRemoteIRR == 0 || len(r.take()) != 0 {
		t.Fatal("EOI of another vector cleared Remote IRR")
	}
	a.EOI(0x51) // still asserted: re-sent, Remote IRR set again
	if got := r.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("EOI while asserted sent %+v, want %+v", got, want)
	}
	p.Set(false)
	a.EOI(0x51)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("EOI after deassert sent %+v", got)
	}
	if entry(a, 10)&EntryRemoteIRR != 0 {
		t.Fatal("Remote IRR still set")
	}
	// Masked while asserted, sent on unmask; switching to edge clears
	// Remote IRR (Linux's EOI for version 0x11 IOAPICs).
	setEntry(a, 10, EntryMasked|EntryLevel|0x51)
	a.Pin(10).Set(true)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("masked level sent %+v", got)
	}
	setEntry(a, 10, EntryLevel|0x51)
	if got := r.take(); len(got) != 1 {
		t.Fatalf("unmasked level sent %+v", got)
	}
	setEntry(a, 10, EntryMasked|0x51)
	if entry(a, 10)&EntryRemoteIRR != 0 {
		t.Fatal("switch to edge left Remote IRR set")
	}
	setEntry(a, 10, EntryLevel|0x51)
	if got := r.take(); len(got) != 1 {
		t.Fatalf("level re-armed sent %+v", got)
	}
}

func TestDeliveryModes(t *testing.T) {
	r := &recorder{}
	a := New(0, r)
	for _, mode := range []devices.DeliveryMode{devices.DeliveryFixed, devices.DeliveryLowestPriority, devices.DeliveryNMI, devices.DeliveryINIT, devices.DeliveryExtINT} {
		setEntry(a, 1, 0xFF<<56|uint64(mode)<<8|0x20)
		a.Pin(1).Set(true)
		a.Pin(1).Set(false)
		got := r.take()
		if len(got) != 1 || got[0].Mode != mode || got[0].Dest != 0xFF {
			t.Errorf("mode %d: sent %+v", mode, got)
		}
	}
}

// op is one random access; run returns what the device answered.
func randomOp(rng *rand.Rand) func(a *IOAPIC, r *recorder) string {
	switch rng.Intn(6) {
	case 0, 1:
		n, high := rng.Intn(NumPins), rng.Intn(2) == 0
		return func(a *IOAPIC, r *recorder) string {
			a.Pin(n).Set(high)
			return fmt.Sprint(r.take())
		}
	case 2:
		reg := uint8(IOREDTBL + rng.Intn(2*NumPins+2))
		if rng.Intn(8) == 0 {
			reg = uint8(rng.Intn(4))
		}
		v := rng.Uint32()
		if reg&1 == 0 {
			v = v&^EntryMasked | uint32(rng.Intn(2))*EntryMasked
			v = v&(0x1FF00|0xFF<<24) | uint32(0x20+rng.Intn(4)) // few vectors, so EOIs match
		}
		return func(a *IOAPIC, r *recorder) string {
			write(a, reg, v)
			return fmt.Sprint(r.take())
		}
	case 3:
		reg := uint8(rng.Intn(IOREDTBL + 2*NumPins + 4))
		return func(a *IOAPIC, r *recorder) string { return fmt.Sprint(read(a, reg)) }
	case 4:
		vec := uint8(0x20 + rng.Intn(5))
		return func(a *IOAPIC, r *recorder) string {
			a.EOI(vec)
			return fmt.Sprint(r.take())
		}
	default:
		off := uint64(rng.Intn(0x20))
		return func(a *IOAPIC, r *recorder) string {
			var b [4]byte
			a.MMIORead(off, b[:])
			return fmt.Sprint(b)
		}
	}
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewSource(seed))
		ops := make([]func(*IOAPIC, *recorder) string, 300)
		for i := range ops {
			ops[i] = randomOp(rng)
		}
		r1 := &recorder{}
		a1 := New(1, r1)
		cut := rng.Intn(len(ops))
		for _, op := range ops[:cut] {
			op(a1, r1)
		}
		blob, err := a1.Save()
		if err != nil {
			t.Fatal(err)
		}
		r2 := &recorder{}
		a2 := New(1, r2)
		if err := a2.Restore(blob); err != nil {
			t.Fatalf("seed %d: restore: %v", seed, err)
		}
		for i, op := range ops[cut:] {
			if g1, g2 := op(a1, r1), op(a2, r2); g1 != g2 {
				t.Fatalf("seed %d op %d after cut %d: original %s, restored %s", seed, i, cut, g1, g2)
			}
		}
		b1, _ := a1.Save()
		b2, _ := a2.Save()
		if !reflect.DeepEqual(b1, b2) {
			t.Fatalf("seed %d: final states differ", seed)
		}
	}
}

func TestRestoreRefused(t *testing.T) {
	a := New(0, &recorder{})
	setEntry(a, 2, 0x77)
	good, _ := a.Save()
	for name, blob := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"magic":     append([]byte("XXXX"), good[4:]...),
		"reserved":  func() []byte { b := append([]byte(nil), good...); b[12+8*2+3] = 0xFF; return b }(),
	} {
		if err := a.Restore(blob); !errors.Is(err, devices.ErrBadState) {
			t.Errorf("%s: err = %v, want ErrBadState", name, err)
		}
	}
	if after, _ := a.Save(); !reflect.DeepEqual(after, good) {
		t.Error("refused restore changed the device")
	}
}

func FuzzRestore(f *testing.F) {
	a := New(0, &recorder{})
	setEntry(a, 2, EntryLevel|0x77)
	a.Pin(2).Set(true)
	good, _ := a.Save()
	f.Add(good)
	f.Fuzz(func(t *testing.T, blob []byte) {
		a := New(0, &recorder{})
		before, _ := a.Save()
		if err := a.Restore(blob); err != nil {
			if !errors.Is(err, devices.ErrBadState) {
				t.Fatalf("err = %v, not ErrBadState", err)
			}
			if after, _ := a.Save(); !reflect.DeepEqual(before, after) {
				t.Fatal("failed restore changed the device")
			}
			return
		}
		// A restored device must survive use and save to the same blob.
		again, _ := a.Save()
		if !reflect.DeepEqual(again, blob) {
			t.Fatalf("save after restore differs")
		}
		for n := 0; n < NumPins; n++ {
			a.Pin(n).Set(true)
			a.EOI(uint8(n))
		}
	})
}
