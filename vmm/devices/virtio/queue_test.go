package virtio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

const (
	tDesc, tAvail, tUsed = 0x0, 0x400, 0x800
	tSize                = 8
)

func newQueue(mem ByteMemory) *Queue {
	q := &Queue{MaxSize: 16}
	q.Reset()
	q.Size, q.Desc, q.Driver, q.Device, q.Enabled = tSize, tDesc, tAvail, tUsed, true
	return q
}

func putDesc(mem ByteMemory, i uint16, addr uint64, n uint32, flags, next uint16) {
	d := mem[tDesc+16*uint64(i):]
	binary.LittleEndian.PutUint64(d, addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

func avail(mem ByteMemory, idx uint16, heads ...uint16) {
	for i, h := range heads {
		binary.LittleEndian.PutUint16(mem[tAvail+4+2*((int(idx)+i)%tSize):], h)
	}
	binary.LittleEndian.PutUint16(mem[tAvail+2:], idx+uint16(len(heads)))
}

func TestPopGatherScatterUsed(t *testing.T) {
	mem := make(ByteMemory, 0x10000)
	q := newQueue(mem)
	copy(mem[0x2000:], "hello, ")
	copy(mem[0x3000:], "world")
	putDesc(mem, 3, 0x2000, 7, DescFNext, 5)
	putDesc(mem, 5, 0x3000, 5, DescFNext, 1)
	putDesc(mem, 1, 0x4000, 4, DescFWrite|DescFNext, 2)
	putDesc(mem, 2, 0x5000, 100, DescFWrite, 0)
	avail(mem, 0, 3)
	if n, err := q.Avail(mem); n != 1 || err != nil {
		t.Fatalf("Avail %d %v", n, err)
	}
	var c Chain
	if err := q.Pop(mem, 1000, &c); err != nil {
		t.Fatal(err)
	}
	if c.Head != 3 || len(c.Descs) != 4 || c.ReadLen != 12 || c.WriteLen != 104 || q.LastAvail != 1 {
		t.Fatalf("chain %+v", c)
	}
	got, err := Gather(mem, &c, nil)
	if err != nil || string(got) != "hello, world" {
		t.Fatalf("gathered %q %v", got, err)
	}
	n, err := Scatter(mem, &c, []byte("abcdefgh"))
	if err != nil || n != 8 || string(mem[0x4000:0x4004]) != "abcd" || string(mem[0x5000:0x5004]) != "efgh" {
		t.Fatalf("scatter %d %v", n, err)
	}
	if err := q.PutUsed(mem, c.Head, 8); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint16(mem[tUsed+2:]) != 0 {
		t.Fatal("used index published before Publish")
	}
	if err := q.Publish(mem); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint16(mem[tUsed+2:]) != 1 || binary.LittleEndian.Uint32(mem[tUsed+4:]) != 3 || binary.LittleEndian.Uint32(mem[tUsed+8:]) != 8 {
		t.Errorf("used ring % x", mem[tUsed:tUsed+12])
	}
}

func TestPopRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(mem ByteMemory)
		max   uint64
	}{
		{"loop", func(m ByteMemory) { putDesc(m, 0, 0x2000, 1, DescFNext, 1); putDesc(m, 1, 0x2000, 1, DescFNext, 0) }, 1 << 20},
		{"next out of range", func(m ByteMemory) { putDesc(m, 0, 0x2000, 1, DescFNext, tSize) }, 1 << 20},
		{"indirect", func(m ByteMemory) { putDesc(m, 0, 0x2000, 16, DescFIndirect, 0) }, 1 << 20},
		{"over the byte limit", func(m ByteMemory) { putDesc(m, 0, 0x2000, 101, 0, 0) }, 100},
		{"wraps", func(m ByteMemory) { putDesc(m, 0, ^uint64(0), 2, 0, 0) }, 1 << 20},
		{"readable after writable", func(m ByteMemory) {
			putDesc(m, 0, 0x2000, 1, DescFNext|DescFWrite, 1)
			putDesc(m, 1, 0x2000, 1, 0, 0)
		}, 1 << 20},
	} {
		mem := make(ByteMemory, 0x10000)
		q := newQueue(mem)
		tc.setup(mem)
		avail(mem, 0, 0)
		var c Chain
		if err := q.Pop(mem, tc.max, &c); !errors.Is(err, ErrGuest) || q.LastAvail != 0 {
			t.Errorf("%s: %v, last avail %d", tc.name, err, q.LastAvail)
		}
	}
	mem := make(ByteMemory, 0x10000)
	q := newQueue(mem)
	binary.LittleEndian.PutUint16(mem[tAvail+2:], tSize+1)
	if _, err := q.Avail(mem); !errors.Is(err, ErrGuest) {
		t.Errorf("available index a queue and one ahead: %v", err)
	}
	q.Driver = 0x10000
	if _, err := q.Avail(mem); !errors.Is(err, ErrGuest) || !errors.Is(err, ErrMemory) {
		t.Errorf("ring outside memory: %v", err)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		q  Queue
		ok bool
	}{
		{Queue{MaxSize: 16, Size: 16}, true},
		{Queue{MaxSize: 16, Size: 0}, false},
		{Queue{MaxSize: 16, Size: 12}, false},
		{Queue{MaxSize: 16, Size: 32}, false},
		{Queue{MaxSize: 16, Size: 8, Desc: 8}, false},
		{Queue{MaxSize: 16, Size: 8, Driver: 1}, false},
		{Queue{MaxSize: 16, Size: 8, Device: 2}, false},
		{Queue{MaxSize: 16, Size: 8, Desc: 16, Driver: 2, Device: 4}, true},
	} {
		if err := tc.q.Check(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.q, err)
		}
	}
}

func TestByteMemoryBounds(t *testing.T) {
	m := make(ByteMemory, 16)
	if err := m.ReadAt(make([]byte, 4), 12); err != nil {
		t.Error(err)
	}
	for _, a := range []uint64{13, 17, ^uint64(0) - 1} {
		if err := m.WriteAt(make([]byte, 4), a); !errors.Is(err, ErrMemory) {
			t.Errorf("write at %#x: %v", a, err)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	mem := make(ByteMemory, 0x1000)
	q := newQueue(mem)
	q.LastAvail, q.UsedIdx = 0xFFFE, 7
	e := devices.NewEncoder("TEST", 1)
	q.Save(e)
	blob := e.Finish()
	d := devices.NewDecoder(blob, "TEST", 1)
	r := (&Queue{MaxSize: 16}).Load(d)
	if err := d.Finish(); err != nil || r != *q {
		t.Fatalf("%+v %v", r, err)
	}
	d = devices.NewDecoder(blob, "TEST", 1)
	(&Queue{MaxSize: 4}).Load(d)
	if !errors.Is(d.Finish(), devices.ErrBadState) {
		t.Error("a queue over the maximum loaded")
	}
	bad := bytes.Clone(blob)
	bad[10+3] = 8 // desc address 8: an enabled queue with a misaligned table
	d = devices.NewDecoder(bad, "TEST", 1)
	(&Queue{MaxSize: 16}).Load(d)
	if !errors.Is(d.Finish(), devices.ErrBadState) {
		t.Error("an impossible enabled queue loaded")
	}
}
