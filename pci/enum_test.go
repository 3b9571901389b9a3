package pci

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/cpu"
)

// fakeFn is one function's configuration space with BAR sizing: a BAR
// register keeps only the bits its size allows, like hardware.
type fakeFn struct {
	cfg     [256]byte
	barMask [6]uint32 // writable bits of each BAR register (0: none)
}

type fakeBus map[Addr]*fakeFn

func (f fakeBus) Read(a Addr, off uint16, size int) uint32 {
	fn, ok := f[a]
	if !ok {
		return ^uint32(0) >> (32 - 8*size)
	}
	var v uint32
	for i := size - 1; i >= 0; i-- {
		v = v<<8 | uint32(fn.cfg[int(off)+i])
	}
	return v
}

func (f fakeBus) Write(a Addr, off uint16, size int, v uint32) {
	fn, ok := f[a]
	if !ok {
		return
	}
	if off >= BAR0 && off < BAR0+24 && size == 4 {
		i := (off - BAR0) / 4
		old := binary.LittleEndian.Uint32(fn.cfg[off:])
		m := fn.barMask[i]
		v = v&m | old&^m
	}
	for i := 0; i < size; i++ {
		fn.cfg[int(off)+i] = byte(v >> (8 * i))
	}
}

func newFn(vendor, device uint16, class uint32) *fakeFn {
	f := &fakeFn{}
	binary.LittleEndian.PutUint16(f.cfg[VendorID:], vendor)
	binary.LittleEndian.PutUint16(f.cfg[DeviceID:], device)
	binary.LittleEndian.PutUint32(f.cfg[RevisionID:], class<<8|3)
	f.cfg[InterruptLine] = 0xFF
	return f
}

func (f *fakeFn) bar(i int, val, size uint32) {
	binary.LittleEndian.PutUint32(f.cfg[BAR0+4*i:], val)
	low := uint32(0xF)
	if val&1 != 0 {
		low = 3
	}
	f.barMask[i] = ^(size - 1) &^ low
}

func (f *fakeFn) caps(list ...uint8) {
	f.cfg[Status] |= StatusCapList
	f.cfg[CapPointer] = 0x40
	for i, id := range list {
		o := 0x40 + 0x10*i
		f.cfg[o] = id
		if i+1 < len(list) {
			f.cfg[o+1] = byte(o + 0x10)
		}
	}
}

func testBus() fakeBus {
	host := newFn(0x8086, 0x1237, 0x060000)
	e1000 := newFn(0x8086, 0x100E, 0x020000)
	e1000.bar(0, 0xFEBC0000, 128<<10)
	e1000.bar(1, 0xC001, 64)
	e1000.cfg[InterruptLine], e1000.cfg[InterruptPin] = 11, 1
	e1000.cfg[Command] = CommandIO | CommandMemory
	isa := newFn(0x8086, 0x7000, 0x060100)
	isa.cfg[HeaderType] = headerMultiFunction
	ide := newFn(0x8086, 0x7010, 0x010180)
	bridge := newFn(0x1B36, 0x0001, 0x060400)
	bridge.cfg[HeaderType] = headerBridge
	bridge.cfg[SecondaryBus] = 1
	virtio := newFn(0x1AF4, 0x1041, 0x020000)
	virtio.bar(1, 0xFEB00000, 4<<10)
	virtio.bar(4, 0x0000000C, 16<<10) // 64-bit prefetchable
	binary.LittleEndian.PutUint32(virtio.cfg[BAR0+20:], 0x1)
	virtio.barMask[5] = 0xFFFFFFFF
	virtio.caps(CapMSIX, CapVendor, CapVendor, CapVendor)
	virtio.cfg[InterruptPin] = 1
	loop := newFn(0x1234, 0x5678, 0xFF0000)
	loop.caps(CapMSI)
	loop.cfg[0x41] = 0x40 // the list points at itself
	return fakeBus{
		{Bus: 0, Dev: 0, Fn: 0}: host,
		{Bus: 0, Dev: 3, Fn: 0}: e1000,
		{Bus: 0, Dev: 1, Fn: 0}: isa,
		{Bus: 0, Dev: 1, Fn: 1}: ide,
		{Bus: 0, Dev: 4, Fn: 0}: bridge,
		{Bus: 1}:                virtio,
		{Bus: 0, Dev: 5, Fn: 0}: loop,
		{Bus: 0, Dev: 2, Fn: 3}: newFn(0xDEAD, 0xBEEF, 0), // function 3 of a single-function device: not scanned
	}
}

func TestEnumerate(t *testing.T) {
	bus := testBus()
	devs := Enumerate(bus)
	var got []string
	for _, d := range devs {
		got = append(got, d.Addr.String()+" "+d.Name())
	}
	want := []string{
		"00:00.0 440FX host bridge", "00:01.0 PIIX3 ISA bridge", "00:01.1 PIIX3 IDE",
		"00:03.0 e1000 (82540EM)", "00:04.0 PCI bridge", "01:00.0 virtio-net (modern)", "00:05.0 device",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("devices:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e := devs[3]
	b0, _ := e.BAR(0)
	b1, _ := e.BAR(1)
	if b0.IO || b0.Addr != 0xFEBC0000 || b0.Size != 128<<10 || !b1.IO || b1.Addr != 0xC000 || b1.Size != 64 {
		t.Errorf("e1000 BARs: %v", e.BARs)
	}
	if e.Interrupts() != "INTA irq 11" {
		t.Errorf("e1000 interrupts %q", e.Interrupts())
	}
	// Sizing restored the BARs and the command register.
	if v := Read32(bus, e.Addr, BAR0); v != 0xFEBC0000 {
		t.Errorf("BAR0 after sizing %#x", v)
	}
	if c := Read16(bus, e.Addr, Command); c != CommandIO|CommandMemory {
		t.Errorf("command after sizing %#x", c)
	}
	v := devs[5]
	b4, ok := v.BAR(4)
	if !ok || !b4.Is64 || !b4.Prefetch || b4.Addr != 0x1_0000_0000 || b4.Size != 16<<10 {
		t.Errorf("virtio 64-bit BAR: %v", v.BARs)
	}
	if len(v.CapsOf(CapVendor)) != 3 || v.Interrupts() != "msi-x,INTA irq 255" {
		t.Errorf("virtio caps %v interrupts %q", v.Caps, v.Interrupts())
	}
	if n := len(devs[6].Caps); n != maxCaps {
		t.Errorf("looping capability list gave %d entries, want the bound %d", n, maxCaps)
	}
	if got := EnableBusMaster(bus, &e); got&CommandBusMaster == 0 {
		t.Errorf("command after EnableBusMaster %#x", got)
	}
	if !strings.Contains(e.String(), "bar0 mem32 0xfebc0000+128K bar1 io 0xc000+64") {
		t.Errorf("report line %q", e.String())
	}
}

func TestMechanism1Ports(t *testing.T) {
	bus := testBus()
	var addr uint32
	f := &cpu.PortFake{
		Read: func(port uint16, size int) uint32 {
			a := Addr{Bus: uint8(addr >> 16), Dev: uint8(addr>>11) & 31, Fn: uint8(addr>>8) & 7}
			return bus.Read(a, uint16(addr&0xFC)+port-ConfigData, size)
		},
		Write: func(port uint16, size int, v uint32) {
			if port == ConfigAddress {
				addr = v
				return
			}
			a := Addr{Bus: uint8(addr >> 16), Dev: uint8(addr>>11) & 31, Fn: uint8(addr>>8) & 7}
			bus.Write(a, uint16(addr&0xFC)+port-ConfigData, size, v)
		},
	}
	m := &Mechanism1{Ports: f}
	if got := Read16(m, Addr{Dev: 3}, DeviceID); got != 0x100E {
		t.Fatalf("device ID through ports %#x", got)
	}
	acc := f.Accesses()
	want := "out32 0x0cf8 0x80001800 in16 0x0cfe 0x100e"
	if s := acc[0].String() + " " + acc[1].String(); s != want {
		t.Errorf("accesses %q, want %q", s, want)
	}
	if n := len(Enumerate(m)); n != 7 {
		t.Errorf("enumeration through ports found %d functions", n)
	}
}

func TestECAM(t *testing.T) {
	e := &ECAM{StartBus: 0, EndBus: 1, Mem: make([]byte, 2<<20)}
	a := Addr{Bus: 1, Dev: 2, Fn: 1}
	Write32(e, a, 0x10, 0xCAFEF00D)
	if off := 1<<20 | 2<<15 | 1<<12 | 0x10; binary.LittleEndian.Uint32(e.Mem[off:]) != 0xCAFEF00D {
		t.Error("ECAM write landed elsewhere")
	}
	if Read16(e, a, 0x12) != 0xCAFE || Read8(e, a, 0x10) != 0x0D {
		t.Error("sized ECAM reads")
	}
	if Read32(e, Addr{Bus: 2}, 0) != 0xFFFFFFFF || Read32(e, a, 4094) != 0xFFFFFFFF {
		t.Error("out-of-window read did not float")
	}
}

func mcfg(entries ...MCFGEntry) []byte {
	t := make([]byte, mcfgEntries+mcfgEntryLen*len(entries))
	copy(t, "MCFG")
	binary.LittleEndian.PutUint32(t[4:], uint32(len(t)))
	for i, e := range entries {
		o := mcfgEntries + mcfgEntryLen*i
		binary.LittleEndian.PutUint64(t[o:], e.Base)
		binary.LittleEndian.PutUint16(t[o+8:], e.Segment)
		t[o+10], t[o+11] = e.StartBus, e.EndBus
	}
	var sum byte
	for _, b := range t {
		sum += b
	}
	t[9] = -sum
	return t
}

func TestParseMCFG(t *testing.T) {
	good := mcfg(MCFGEntry{Base: 0xB0000000, StartBus: 0, EndBus: 255})
	got, err := ParseMCFG(good)
	if err != nil || len(got) != 1 || got[0].Base != 0xB0000000 || got[0].EndBus != 255 {
		t.Fatalf("ParseMCFG = %v, %v", got, err)
	}
	bad := append([]byte(nil), good...)
	bad[50]++
	inverted := mcfg(MCFGEntry{Base: 0xB0000000, StartBus: 9, EndBus: 1})
	for name, b := range map[string][]byte{
		"checksum": bad, "short": good[:20], "truncated": good[:50], "inverted buses": inverted,
		"signature": append([]byte("APIC"), good[4:]...),
	} {
		if _, err := ParseMCFG(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFindACPITable(t *testing.T) {
	mem := make([]byte, 1<<20)
	table := mcfg(MCFGEntry{Base: 0xE0000000, EndBus: 63})
	copy(mem[0x9000:], table)
	// RSDT at 0x8000 listing a bogus table, then the MCFG.
	rsdt := make([]byte, acpiHeaderLen+8)
	copy(rsdt, "RSDT")
	binary.LittleEndian.PutUint32(rsdt[4:], uint32(len(rsdt)))
	binary.LittleEndian.PutUint32(rsdt[36:], 0xA000)
	binary.LittleEndian.PutUint32(rsdt[40:], 0x9000)
	var sum byte
	for _, b := range rsdt {
		sum += b
	}
	rsdt[9] = -sum
	copy(mem[0x8000:], rsdt)
	rsdp := mem[0xF0010:]
	copy(rsdp, "RSD PTR ")
	binary.LittleEndian.PutUint32(rsdp[16:], 0x8000)
	sum = 0
	for _, b := range rsdp[:20] {
		sum += b
	}
	rsdp[8] = -sum
	read := func(pa uint64, n int) ([]byte, error) { return mem[pa : pa+uint64(n)], nil }
	got, err := FindACPITable(read, "MCFG")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := ParseMCFG(got); err != nil || e[0].Base != 0xE0000000 {
		t.Errorf("found MCFG decodes to %v, %v", e, err)
	}
	if _, err := FindACPITable(read, "HPET"); err == nil {
		t.Error("missing table found")
	}
}

func FuzzParseMCFG(f *testing.F) {
	f.Add(mcfg(MCFGEntry{Base: 0xB0000000, EndBus: 255}))
	f.Add(mcfg())
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseMCFG(b)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.EndBus < e.StartBus || e.Base%(1<<20) != 0 {
				t.Fatalf("accepted bad entry %+v", e)
			}
		}
	})
}

type table map[uint32]uint32

func (t table) Write32(off uint32, v uint32) { t[off] = v }

func TestEnableMSIX(t *testing.T) {
	bus := testBus()
	devs := Enumerate(bus)
	v := &devs[5]
	binary.LittleEndian.PutUint16(bus[v.Addr].cfg[0x40+msixControl:], 2) // 3 entries
	binary.LittleEndian.PutUint32(bus[v.Addr].cfg[0x40+msixTable:], 0x800|1)
	x, err := ReadMSIX(bus, v)
	if err != nil || x.TableSize != 3 || x.TableBAR != 1 || x.TableOffset != 0x800 {
		t.Fatalf("ReadMSIX = %+v, %v", x, err)
	}
	tab := table{}
	msg := LAPICMessage(1, 0x60)
	if msg.Addr != 0xFEE01000 || msg.Data != 0x60 {
		t.Errorf("LAPICMessage = %+v", msg)
	}
	if err := EnableMSIX(bus, v, x, tab, []Message{msg}); err != nil {
		t.Fatal(err)
	}
	if tab[0x800] != 0xFEE01000 || tab[0x804] != 0 || tab[0x808] != 0x60 || tab[0x80C] != 0 {
		t.Errorf("table entry 0: %v", tab)
	}
	ctl := Read16(bus, v.Addr, 0x40+msixControl)
	if ctl&msixControlEn == 0 || ctl&msixControlMask != 0 {
		t.Errorf("message control %#x", ctl)
	}
	if Read16(bus, v.Addr, Command)&CommandINTxDisable == 0 {
		t.Error("INTx still enabled")
	}
	if err := EnableMSIX(bus, v, x, tab, make([]Message, 4)); err == nil {
		t.Error("4 messages into a 3-entry table accepted")
	}
	if _, err := ReadMSIX(bus, &devs[0]); !errors.Is(err, ErrNoMSI) {
		t.Errorf("host bridge MSI-X: %v", err)
	}
}

func TestEnableMSI(t *testing.T) {
	bus := testBus()
	devs := Enumerate(bus)
	loop := &devs[6] // MSI capability at 0x40
	for _, is64 := range []bool{false, true} {
		ctl := uint16(0)
		if is64 {
			ctl = msiControl64
		}
		binary.LittleEndian.PutUint16(bus[loop.Addr].cfg[0x40+msiControl:], ctl)
		if err := EnableMSI(bus, loop, LAPICMessage(0, 0x61)); err != nil {
			t.Fatal(err)
		}
		dataOff := uint16(0x48)
		if is64 {
			dataOff = 0x4C
		}
		if Read32(bus, loop.Addr, 0x44) != 0xFEE00000 || Read16(bus, loop.Addr, dataOff) != 0x61 {
			t.Errorf("64-bit %v: address %#x data %#x", is64, Read32(bus, loop.Addr, 0x44), Read16(bus, loop.Addr, dataOff))
		}
		if Read16(bus, loop.Addr, 0x40+msiControl)&msiControlEn == 0 {
			t.Errorf("64-bit %v: MSI not enabled", is64)
		}
	}
	if err := EnableMSI(bus, &devs[0], Message{}); !errors.Is(err, ErrNoMSI) {
		t.Errorf("host bridge MSI: %v", err)
	}
}
