package loader

import (
	"errors"
	"reflect"
	"testing"
)

func TestPCLayout(t *testing.T) {
	for _, tc := range []struct {
		ram      uint64
		wantEnd  uint64
		wantHigh bool
	}{
		{64 << 20, 64 << 20, false},
		{3 << 30, 3 << 30, false},
		{4 << 30, 5 << 30, true},
	} {
		l := NewPCLayout(tc.ram)
		if err := l.Validate(); err != nil {
			t.Fatalf("NewPCLayout(%#x): %v", tc.ram, err)
		}
		if got := l.RAMEnd(); got != tc.wantEnd {
			t.Errorf("NewPCLayout(%#x).RAMEnd() = %#x, want %#x", tc.ram, got, tc.wantEnd)
		}
		var total uint64
		for _, e := range l.Map {
			if e.Type == E820RAM {
				total += e.Size
			}
		}
		if want := tc.ram - (HighMemory - LowRAMEnd); total != want {
			t.Errorf("NewPCLayout(%#x): %#x bytes of RAM, want %#x", tc.ram, total, want)
		}
		if l.IsRAM(LowRAMEnd, 1) || l.IsRAM(LAPICBase, 1) || !l.IsRAM(0, LowRAMEnd) {
			t.Errorf("NewPCLayout(%#x): holes wrong: %+v", tc.ram, l.Map)
		}
	}
}

func TestCarve(t *testing.T) {
	l := NewPCLayout(64 << 20)
	if err := l.Carve(0x3F00000, 0x10000, E820ACPI); err != nil {
		t.Fatal(err)
	}
	want := []E820Entry{
		{0, LowRAMEnd, E820RAM},
		{LowRAMEnd, HighMemory - LowRAMEnd, E820Reserved},
		{HighMemory, 0x3F00000 - HighMemory, E820RAM},
		{0x3F00000, 0x10000, E820ACPI},
		{0x3F10000, 0x4000000 - 0x3F10000, E820RAM},
		{IOAPICBase, 0x1000, E820Reserved},
		{LAPICBase, 0x1000, E820Reserved},
	}
	if !reflect.DeepEqual(l.Map, want) {
		t.Errorf("after Carve:\n got %+v\nwant %+v", l.Map, want)
	}
	if err := l.Validate(); err != nil {
		t.Error(err)
	}
	if l.IsRAM(0x3F00000, 1) || !l.IsRAM(HighMemory, 0x3F00000-HighMemory) {
		t.Error("IsRAM wrong around the carved range")
	}
	// Not inside one RAM range.
	if err := l.Carve(LowRAMEnd-0x1000, 0x2000, E820ACPI); !errors.Is(err, ErrBadLayout) {
		t.Errorf("Carve across a hole = %v, want ErrBadLayout", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    []E820Entry
	}{
		{"empty", nil},
		{"no RAM", []E820Entry{{0, 0x1000, E820Reserved}}},
		{"zero size", []E820Entry{{0, 0, E820RAM}}},
		{"overlap", []E820Entry{{0, 0x2000, E820RAM}, {0x1000, 0x1000, E820Reserved}}},
		{"unsorted", []E820Entry{{0x2000, 0x1000, E820RAM}, {0, 0x1000, E820RAM}}},
		{"wraps", []E820Entry{{^uint64(0) - 10, 100, E820RAM}}},
	} {
		if err := (Layout{Map: tc.m}).Validate(); !errors.Is(err, ErrBadLayout) {
			t.Errorf("%s: Validate = %v, want ErrBadLayout", tc.name, err)
		}
	}
}
