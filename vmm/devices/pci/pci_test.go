package pci

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/devtest"
	"github.com/doppel-ft/doppel/vmm/devices/reset"
)

type rig struct {
	*Bus
	pirq  [4]*devtest.Line
	nic   *Config
	other *Config
	fn1   *Config
}

func addr(dev, fn, reg int) uint32 {
	return AddrEnable | uint32(dev)<<addrDevShift | uint32(fn)<<addrFnShift | uint32(reg)
}

func newRig(t testing.TB) rig {
	var r rig
	var lines [4]devices.Line
	for i := range r.pirq {
		r.pirq[i] = &devtest.Line{}
		lines[i] = r.pirq[i]
	}
	r.Bus = NewBus(lines)
	var err error
	r.nic, err = NewConfig(Header{VendorID: 0x1AF4, DeviceID: 0x1000, Class: 0x020000, InterruptPin: 1,
		BARs: [NumBARs]BAR{{Size: 32, IO: true}, {Size: 4096}, {Size: 1 << 20, Mem64: true, Prefetched: true}}})
	if err != nil {
		t.Fatal(err)
	}
	r.other, _ = NewConfig(Header{VendorID: 0x1234, DeviceID: 0x5678, InterruptPin: 1})
	r.fn1, _ = NewConfig(Header{VendorID: 0x1234, DeviceID: 0x0001, InterruptPin: 2})
	for _, a := range []struct {
		dev, fn int
		c       *Config
	}{{3, 0, r.nic}, {7, 0, r.other}, {7, 1, r.fn1}} {
		if err := r.Add(a.dev, a.fn, a.c); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r rig) cfgRead(dev, fn, reg, size int) uint32 {
	r.PortOut(0, 4, addr(dev, fn, reg&^3))
	return r.PortIn(uint16(4+reg&3), size)
}

func (r rig) cfgWrite(dev, fn, reg, size int, v uint32) {
	r.PortOut(0, 4, addr(dev, fn, reg&^3))
	r.PortOut(uint16(4+reg&3), size, v)
}

func TestConfigReads(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		name             string
		dev, fn, reg, sz int
		want             uint32
	}{
		{"host bridge IDs", 0, 0, 0, 4, DeviceI440FX<<16 | VendorIntel},
		{"host bridge device ID word", 0, 0, 2, 2, DeviceI440FX},
		{"host bridge class bytes", 0, 0, 0x0B, 1, 0x06},
		{"host bridge revision and class", 0, 0, 8, 4, ClassHostBridge<<8 | revisionI440FX},
		{"absent device", 5, 0, 0, 4, 0xFFFFFFFF},
		{"absent function word", 3, 2, 0, 2, 0xFFFF},
		{"multi-function bit on 07.0", 7, 0, HeaderTypeOffset, 1, HeaderMultiFunction},
		{"multi-function bit in the dword", 7, 0, 0x0C, 4, HeaderMultiFunction << 16},
		{"no multi-function bit on 03.0", 3, 0, HeaderTypeOffset, 1, 0},
		{"interrupt pin", 7, 1, InterruptPinOffset, 1, 2},
	} {
		if got := r.cfgRead(tc.dev, tc.fn, tc.reg, tc.sz); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	// Disabled or another bus: master abort.
	r.PortOut(0, 4, addr(0, 0, 0)&^AddrEnable)
	if v := r.PortIn(4, 4); v != 0xFFFFFFFF {
		t.Errorf("disabled read %#x", v)
	}
	r.PortOut(0, 4, addr(0, 0, 0)|1<<addrBusShift)
	if v := r.PortIn(4, 4); v != 0xFFFFFFFF {
		t.Errorf("bus 1 read %#x", v)
	}
}

// Linux's pci_check_type1.
func TestLinuxType1Check(t *testing.T) {
	r := newRig(t)
	var resets []reset.Kind
	r.CF9 = reset.New(func(k reset.Kind) { resets = append(resets, k) })
	r.PortOut(3, 1, 0x01) // byte write to 0xCFB: not CONFIG_ADDRESS
	saved := r.PortIn(0, 4)
	r.PortOut(0, 4, 0x80000000)
	if got := r.PortIn(0, 4); got != 0x80000000 {
		t.Errorf("CONFIG_ADDRESS reads %#x", got)
	}
	r.PortOut(0, 4, saved)
	r.PortOut(0, 4, 0xFFFFFFFF)
	if got := r.PortIn(0, 4); got != addrMask {
		t.Errorf("reserved bits kept: %#x", got)
	}
	// 0xCF9 bytes reach the reset register.
	r.PortOut(1, 1, 0x06)
	if fmt.Sprint(resets) != "[hard]" {
		t.Errorf("resets %v", resets)
	}
}

func TestBARSizing(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		bar  int
		want uint32
	}{
		{0, 0xFFFFFFE1}, // 32 bytes of I/O
		{1, 0xFFFFF000}, // 4 KiB memory
		{2, 0xFFF0000C}, // 1 MiB, 64-bit, prefetchable
		{3, 0xFFFFFFFF}, // its upper half
		{4, 0},          // unused
	} {
		reg := BAR0Offset + 4*tc.bar
		r.cfgWrite(3, 0, reg, 4, 0xFFFFFFFF)
		if got := r.cfgRead(3, 0, reg, 4); got != tc.want {
			t.Errorf("BAR%d sizing reads %#x, want %#x", tc.bar, got, tc.want)
		}
	}
	r.cfgWrite(3, 0, BAR0Offset, 4, 0xC040)
	r.cfgWrite(3, 0, BAR0Offset+4, 4, 0xFEB00000)
	r.cfgWrite(3, 0, BAR0Offset+8, 4, 0xE0000000)
	r.cfgWrite(3, 0, BAR0Offset+12, 4, 0x1)
	for i, want := range []uint64{0xC040, 0xFEB00000, 0x1E0000000} {
		if got := r.nic.BARAddress(i); got != want {
			t.Errorf("BAR%d address %#x, want %#x", i, got, want)
		}
	}
	// Read-only fields stay; the command register takes its bits only.
	r.cfgWrite(3, 0, 0, 4, 0)
	r.cfgWrite(3, 0, CommandOffset, 2, 0xFFFF)
	if id := r.cfgRead(3, 0, 0, 2); id != 0x1AF4 {
		t.Errorf("vendor ID written: %#x", id)
	}
	if cmd := r.nic.Command(); cmd != commandWritable {
		t.Errorf("command %#x", cmd)
	}
	if _, err := NewConfig(Header{BARs: [NumBARs]BAR{{Size: 48}}}); err == nil {
		t.Error("a BAR of 48 bytes accepted")
	}
	if _, err := NewConfig(Header{BARs: [NumBARs]BAR{{Size: 4096, Mem64: true}, {Size: 16}}}); err == nil {
		t.Error("a 64-bit BAR overlapping BAR1 accepted")
	}
}

func TestINTxSharing(t *testing.T) {
	r := newRig(t)
	// 03.0 INTA and 07.0 INTA both swizzle to PIRQD; 07.1 INTB to PIRQA.
	d := r.pirq[Swizzle(3, 1)]
	if Swizzle(7, 1) != Swizzle(3, 1) || Swizzle(7, 2) != 0 {
		t.Fatal("swizzle")
	}
	r.nic.SetINTx(true)
	r.other.SetINTx(true)
	r.nic.SetINTx(false)
	if !d.High || d.Rises != 1 {
		t.Errorf("shared PIRQ: high %v, %d rises", d.High, d.Rises)
	}
	if r.cfgRead(7, 0, StatusOffset, 2)&StatusInterrupt == 0 || r.cfgRead(3, 0, StatusOffset, 2)&StatusInterrupt != 0 {
		t.Error("status interrupt bits")
	}
	r.cfgWrite(7, 0, CommandOffset, 2, CommandINTxDisable)
	if d.High {
		t.Error("INTx disable did not lower the line")
	}
	r.fn1.SetINTx(true)
	if !r.pirq[0].High {
		t.Error("07.1 INTB not on PIRQA")
	}
}

func TestCapabilities(t *testing.T) {
	c, _ := NewConfig(Header{VendorID: 1})
	a, _ := c.AddCapability(0x09, []byte{1, 2, 3})
	b, _ := c.AddCapability(0x05, []byte{9})
	if c.ReadConfig(StatusOffset, 2)&StatusCapabilities == 0 || c.ReadConfig(CapabilitiesOffset, 1) != uint32(a) {
		t.Fatal("no capabilities list")
	}
	if c.ReadConfig(a, 1) != 0x09 || c.ReadConfig(a+1, 1) != uint32(b) || c.ReadConfig(b, 1) != 0x05 || c.ReadConfig(b+1, 1) != 0 {
		t.Errorf("list %#x -> %#x", a, b)
	}
	c.WriteConfig(a+2, 1, 0xFF)
	if c.ReadConfig(a+2, 1) != 1 {
		t.Error("capability body writable")
	}
}

func (r rig) Do(op devtest.Op) uint64 {
	switch op.Kind {
	case 0:
		return uint64(r.PortIn(op.Offset, op.Size))
	case 1:
		r.PortOut(op.Offset, op.Size, op.Value)
	case 2:
		[]*Config{r.nic, r.other, r.fn1}[op.Offset%3].SetINTx(op.Value&1 == 1)
	}
	return 0
}

func (r rig) Observe() string {
	var s string
	for _, l := range r.pirq {
		s += fmt.Sprint(l.High, l.Rises, " ")
		l.Rises = 0
	}
	return s
}

func genOp(r *rand.Rand) devtest.Op {
	switch r.Intn(4) {
	case 0: // select a register
		dev := []int{0, 3, 7, 7, 9}[r.Intn(5)]
		return devtest.Op{Kind: 1, Offset: 0, Size: 4, Value: addr(dev, r.Intn(2), r.Intn(64)*4)}
	case 1:
		return devtest.Op{Kind: 2, Offset: uint16(r.Intn(3)), Value: uint32(r.Intn(2))}
	}
	size := 1 << r.Intn(3)
	off := 4 + uint16(r.Intn(4/size)*size)
	v := r.Uint32()
	if r.Intn(3) == 0 {
		v = 0xFFFFFFFF
	}
	return devtest.Op{Kind: r.Intn(2), Offset: off, Size: size, Value: v}
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		devtest.SaveRestore(t, seed, 1500, func(*devtest.Clock) devtest.Subject {
			return newRig(t)
		}, genOp)
	}
}

func TestRestoreRefusesOtherBus(t *testing.T) {
	r := newRig(t)
	r.nic.SetINTx(true)
	blob, _ := r.Save()
	other := NewBus([4]devices.Line{devices.NoLine, devices.NoLine, devices.NoLine, devices.NoLine})
	if err := other.Restore(blob); !errors.Is(err, devices.ErrBadState) {
		t.Errorf("a bus with other functions took the state: %v", err)
	}
	// Same slots, another device at 07.1: refused, and 03.0 rolled back.
	r2 := newRig(t)
	r2.fn1.space[0] = 0x99
	before, _ := r2.Save()
	if err := r2.Restore(blob); !errors.Is(err, devices.ErrBadState) {
		t.Fatalf("other device accepted: %v", err)
	}
	if after, _ := r2.Save(); string(after) != string(before) || r2.pirq[Swizzle(3, 1)].High {
		t.Error("a refused restore left changes")
	}
}

func FuzzRestore(f *testing.F) {
	r := newRig(f)
	r.cfgWrite(3, 0, BAR0Offset, 4, 0xFFFFFFFF)
	r.nic.SetINTx(true)
	blob, _ := r.Save()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		devtest.Restore(t, newRig(t), b)
	})
}
