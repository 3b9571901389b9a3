package fwcfg

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
)

func read(d *Device, key uint16, n int) []byte {
	d.PortOut(Selector, 2, uint32(key))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(d.PortIn(Data, 1))
	}
	return b
}

func TestItems(t *testing.T) {
	d := New(4, 256<<20)
	for _, tc := range []struct {
		name string
		key  uint16
		want []byte
	}{
		{"signature", KeySignature, []byte("QEMU")},
		{"ID: traditional, no DMA", KeyID, []byte{1, 0, 0, 0}},
		{"RAM size", KeyRAMSize, binary.LittleEndian.AppendUint64(nil, 256<<20)},
		{"CPUs", KeyNBCPUs, []byte{4, 0}},
		{"max CPUs", KeyMaxCPUs, []byte{4, 0}},
		{"empty directory", KeyFileDir, []byte{0, 0, 0, 0}},
		{"past the end reads 0", KeySignature + 0, append([]byte("QEMU"), 0, 0)},
		{"unknown key reads 0", 0x7FF0, []byte{0, 0}},
	} {
		if got := read(d, tc.key, len(tc.want)); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %x, want %x", tc.name, got, tc.want)
		}
	}
	// As QEMU: a byte write does not select, a data write is ignored, a
	// byte read of either port reads data, a wider read is refused.
	d.PortOut(Selector, 2, KeySignature)
	d.PortIn(Data, 1)
	d.PortOut(Selector, 1, KeyID)
	d.PortOut(Data, 1, 0xAA)
	if got := d.PortIn(Selector, 1); got != 'E' {
		t.Errorf("after ignored writes read %#x, want 'E'", got)
	}
	if got := d.PortIn(Data, 2); got != 0xFFFF {
		t.Errorf("word read %#x, want all ones", got)
	}
	if got := d.PortIn(Data, 1); got != 'M' {
		t.Errorf("after a refused word read %#x, want 'M'", got)
	}
	d.PortOut(Data, 2, KeyNBCPUs) // a 16-bit write at the data port selects
	if got := d.PortIn(Data, 1); got != 4 {
		t.Errorf("after selecting at the data port read %#x", got)
	}
}

func TestFiles(t *testing.T) {
	d := New(1, 1<<30)
	kb, err := d.AddFile("etc/b", []byte("bee"))
	if err != nil {
		t.Fatal(err)
	}
	ka, err := d.AddFile("etc/a", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if kb != KeyFileFirst || ka != KeyFileFirst+1 {
		t.Errorf("keys %#x %#x", kb, ka)
	}
	for _, bad := range []string{"", string(make([]byte, 56)), "etc/a"} {
		if _, err := d.AddFile(bad, nil); err == nil {
			t.Errorf("AddFile(%q) accepted", bad)
		}
	}
	dir := read(d, KeyFileDir, 4+2*64)
	if n := binary.BigEndian.Uint32(dir); n != 2 {
		t.Fatalf("directory count %d", n)
	}
	for i, want := range []struct {
		name string
		size uint32
		key  uint16
	}{{"etc/a", 1, ka}, {"etc/b", 3, kb}} {
		e := dir[4+64*i:]
		name := string(bytes.TrimRight(e[8:64], "\x00"))
		if name != want.name || binary.BigEndian.Uint32(e) != want.size || binary.BigEndian.Uint16(e[4:]) != want.key {
			t.Errorf("entry %d: %q size %d key %#x", i, name, binary.BigEndian.Uint32(e), binary.BigEndian.Uint16(e[4:]))
		}
	}
	if got := read(d, kb, 3); string(got) != "bee" {
		t.Errorf("file read %q", got)
	}
}

type subject struct{ *Device }

func (s subject) Do(op devtest.Op) uint64 {
	if op.Kind == 0 {
		return uint64(s.PortIn(op.Offset, op.Size))
	}
	s.PortOut(op.Offset, op.Size, op.Value)
	return 0
}

func (s subject) Observe() string { return "" }

func newDevice() *Device {
	d := New(2, 512<<20)
	d.AddFile("etc/e820", make([]byte, 40))
	d.AddFile("opt/x", []byte("hello"))
	return d
}

func TestSaveRestoreRandom(t *testing.T) {
	keys := []uint32{KeySignature, KeyID, KeyRAMSize, KeyNBCPUs, KeyFileDir, KeyFileFirst, KeyFileFirst + 1, 0x4444}
	for seed := int64(1); seed <= 20; seed++ {
		devtest.SaveRestore(t, seed, 1000, func(*devtest.Clock) devtest.Subject {
			return subject{newDevice()}
		}, func(r *rand.Rand) devtest.Op {
			if r.Intn(8) == 0 {
				return devtest.Op{Kind: 1, Offset: Selector, Size: 2, Value: keys[r.Intn(len(keys))]}
			}
			return devtest.Op{Kind: 0, Offset: uint16(r.Intn(2)), Size: 1 << r.Intn(3)}
		})
	}
}

func FuzzRestore(f *testing.F) {
	d := newDevice()
	read(d, KeyFileDir, 7)
	blob, _ := d.Save()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		devtest.Restore(t, newDevice(), b)
	})
}
