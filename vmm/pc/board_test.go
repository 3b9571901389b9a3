package pc

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/vmm/devices/ioapic"
	"github.com/doppel-ft/doppel/vmm/devices/lapic"
)

type fixedClock struct{ ns int64 }

func (c *fixedClock) Nanotime() int64 { return c.ns }

func newTestBoard(t *testing.T, cpus int) (*Board, *bytes.Buffer, *[]string) {
	t.Helper()
	var out bytes.Buffer
	var stops []string
	b, err := NewBoard(BoardConfig{CPUs: cpus, MemSize: 64 << 20, Console: &out, Clock: &fixedClock{}, TSCHz: 100_000_000,
		OnStop: func(r string) { stops = append(stops, r) }})
	if err != nil {
		t.Fatal(err)
	}
	return b, &out, &stops
}

func TestBoardPortsAndStop(t *testing.T) {
	b, out, stops := newTestBoard(t, 2)
	for _, c := range "hi\n" {
		b.Ports.Out(COM1, 1, uint32(c))
	}
	if !strings.Contains(out.String(), "hi") {
		t.Errorf("console got %q", out.String())
	}
	// fw_cfg signature and CPU count.
	b.Ports.Out(0x510, 2, 0)
	var sig []byte
	for i := 0; i < 4; i++ {
		sig = append(sig, byte(b.Ports.In(0x511, 1)))
	}
	b.Ports.Out(0x510, 2, 5)
	if n := b.Ports.In(0x511, 1); string(sig) != "QEMU" || n != 2 {
		t.Errorf("fw_cfg: signature %q cpus %d", sig, n)
	}
	if b.Ports.Unclaimed != 0 {
		t.Errorf("%d unclaimed accesses", b.Ports.Unclaimed)
	}
	b.Ports.Out(0xF4, 1, 3)
	if len(*stops) != 1 || !strings.Contains((*stops)[0], "code 3") || b.ExitStatus != 7 {
		t.Errorf("debug exit: stops %q status %d", *stops, b.ExitStatus)
	}
	b.Ports.Out(0xCF9, 1, 0x6)
	if len(*stops) != 2 || !strings.Contains((*stops)[1], "reset") {
		t.Errorf("reset: stops %q", *stops)
	}
	b.Ports.Out(0x600, 1, 5<<2|1<<5) // SLP_TYP=S5, SLP_EN
	if len(*stops) != 3 || !strings.Contains((*stops)[2], "S5") {
		t.Errorf("ACPI sleep: stops %q", *stops)
	}
	if got := len(b.Snapshotters()); got != 9+2 {
		t.Errorf("%d devices to save", got)
	}
}

// TestBoardUARTInterruptThroughPIC: the UART's THR-empty interrupt goes
// through the PIC to the boot vCPU's LINT0 (virtual wire) and is taken
// with the PIC's vector; it wakes the halted vCPU.
func TestBoardUARTInterruptThroughPIC(t *testing.T) {
	b, _, _ := newTestBoard(t, 1)
	src := b.Source(0)
	if src.InterruptPending() {
		t.Fatal("interrupt pending at reset")
	}
	// ICW1-4: vectors 0x20 (master), 0x28 (slave), cascade on IR2, 8086
	// mode; then unmask IRQ 4 only.
	for _, w := range []struct {
		port uint16
		v    uint32
	}{{0x20, 0x11}, {0x21, 0x20}, {0x21, 0x04}, {0x21, 0x01}, {0xA0, 0x11}, {0xA1, 0x28}, {0xA1, 0x02}, {0xA1, 0x01},
		{0x21, 0xEF}, {0xA1, 0xFF}} {
		b.Ports.Out(w.port, 1, w.v)
	}
	b.Ports.Out(COM1+4, 1, 0x08) // MCR OUT2: the UART's IRQ reaches the bus
	b.Ports.Out(COM1+1, 1, 0x02) // IER: THR empty
	select {
	case <-b.Wake[0]:
	default:
		t.Error("the halted boot vCPU was not woken")
	}
	if !src.InterruptPending() {
		t.Fatal("no interrupt pending after the UART raised IRQ 4")
	}
	v, ok := src.TakeInterrupt()
	if !ok || v != 0x24 {
		t.Fatalf("took vector %#x, %v; want 0x24", v, ok)
	}
}

// TestBoardIOAPICToLAPIC: an IOAPIC redirection entry delivers the UART's
// IRQ 4 to vCPU 1's LAPIC as a fixed interrupt.
func TestBoardIOAPICToLAPIC(t *testing.T) {
	b, _, _ := newTestBoard(t, 2)
	// Enable vCPU 1's LAPIC (SVR bit 8) and route IOAPIC pin 4 to APIC
	// ID 1, vector 0x41, edge, physical.
	b.LAPICs[1].MMIOWrite(lapic.RegSVR, []byte{0xFF, 0x01, 0, 0})
	w32 := func(off uint64, v uint32) {
		b.MMIO[1].Write(ioapic.DefaultBase+off, []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
	}
	w32(0, 0x10+2*4)
	w32(0x10, 0x41)
	w32(0, 0x10+2*4+1)
	w32(0x10, 1<<24)
	// Mask the PIC as an IOAPIC-using guest does (OCW1).
	b.Ports.Out(0x21, 1, 0xFF)
	b.Ports.Out(0xA1, 1, 0xFF)
	b.Ports.Out(COM1+4, 1, 0x08)
	b.Ports.Out(COM1+1, 1, 0x02)
	v, ok := b.Source(1).TakeInterrupt()
	if !ok || v != 0x41 {
		t.Fatalf("vCPU 1 took %#x, %v; want 0x41", v, ok)
	}
	if b.Source(0).InterruptPending() {
		t.Error("vCPU 0 has an interrupt too")
	}
}

func TestBoardACPITables(t *testing.T) {
	b, _, _ := newTestBoard(t, 2)
	tb, err := b.ACPITables()
	if err != nil {
		t.Fatal(err)
	}
	if tb.RSDP != ACPIBase || tb.Base+uint64(len(tb.Bytes)) > 0x10_0000 || string(tb.Bytes[:8]) != "RSD PTR " {
		t.Errorf("RSDP at %#x, %d bytes, starts %q", tb.RSDP, len(tb.Bytes), tb.Bytes[:8])
	}
	madt := tb.Bytes[tb.Offsets["APIC"]:]
	if string(madt[:4]) != "APIC" {
		t.Fatalf("no MADT")
	}
	// Two Processor Local APIC entries (type 0) for two vCPUs.
	n := 0
	length := int(madt[4]) | int(madt[5])<<8
	for off := 44; off+2 <= length; off += int(madt[off+1]) {
		if madt[off] == 0 {
			n++
		}
		if madt[off+1] == 0 {
			t.Fatal("zero-length MADT entry")
		}
	}
	if n != 2 {
		t.Errorf("%d processor entries, want 2", n)
	}
}

// TestInputQueue: input longer than the UART's FIFO arrives whole as the
// guest reads it.
func TestInputQueue(t *testing.T) {
	b, _, _ := newTestBoard(t, 1)
	q := &inputQueue{b: b}
	want := strings.Repeat("0123456789", 10)
	q.add([]byte(want))
	var got []byte
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		if b.Ports.In(COM1+5, 1)&1 != 0 { // LSR data ready
			got = append(got, byte(b.Ports.In(COM1, 1)))
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	if string(got) != want {
		t.Errorf("guest read %q", got)
	}
	if b.UART.Overruns != 0 {
		t.Errorf("%d overruns", b.UART.Overruns)
	}
}
