package pc

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/acpi"
	"github.com/doppel-ft/doppel/vmm/devices/ioapic"
	"github.com/doppel-ft/doppel/vmm/devices/lapic"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
)

var testMAC = [6]byte{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}

func newNetBoard(t *testing.T, cpus int) (*Board, *[]string) {
	t.Helper()
	var stops []string
	b, err := NewBoard(BoardConfig{CPUs: cpus, MemSize: 1 << 20, Console: io.Discard, Clock: &fixedClock{}, TSCHz: 100_000_000,
		OnStop: func(r string) { stops = append(stops, r) },
		Net: &NetConfig{MAC: testMAC, Memory: make(virtio.ByteMemory, 1<<20),
			Backend: virtionet.BackendFunc(func(uint64, []byte) {})}})
	if err != nil {
		t.Fatal(err)
	}
	return b, &stops
}

// cfgRead reads a configuration register of 00:dev.0 the way a guest
// does: CONFIG_ADDRESS at 0xCF8, then the data port.
func cfgRead(b *Board, dev int, reg uint8, size int) uint32 {
	b.Ports.Out(pci.ConfigPort, 4, pci.AddrEnable|uint32(dev)<<11|uint32(reg&^3))
	return b.Ports.In(pci.ConfigPort+4+uint16(reg&3), size)
}

func cfgWrite(b *Board, dev int, reg uint8, size int, v uint32) {
	b.Ports.Out(pci.ConfigPort, 4, pci.AddrEnable|uint32(dev)<<11|uint32(reg&^3))
	b.Ports.Out(pci.ConfigPort+4+uint16(reg&3), size, v)
}

func TestNetBoardPCI(t *testing.T) {
	b, stops := newNetBoard(t, 1)
	for _, tc := range []struct {
		name      string
		dev       int
		reg       uint8
		size      int
		want      uint32
		wantUnset bool
	}{
		{"host bridge", 0, pci.VendorIDOffset, 4, pci.DeviceI440FX<<16 | pci.VendorIntel, false},
		{"virtio-net ids", NetPCIDevice, pci.VendorIDOffset, 4, virtionet.PCIDeviceID<<16 | virtio.PCIVendorID, false},
		{"BAR 0 as firmware left it", NetPCIDevice, pci.BAR0Offset, 4, NetBARBase, false},
		{"memory decoding and bus mastering on", NetPCIDevice, pci.CommandOffset, 2, pci.CommandMemory | pci.CommandBusMaster, false},
		{"interrupt line", NetPCIDevice, pci.InterruptLineOffset, 1, PICIRQNet, false},
		{"INTA#", NetPCIDevice, pci.InterruptPinOffset, 1, 1, false},
		{"empty slot", 4, pci.VendorIDOffset, 4, 0xFFFFFFFF, false},
	} {
		if got := cfgRead(b, tc.dev, tc.reg, tc.size); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	// 0xCF9 shares the configuration ports' dword: still the reset.
	b.Ports.Out(0xCF9, 1, 0x6)
	if len(*stops) != 1 || !strings.Contains((*stops)[0], "reset") {
		t.Errorf("reset through 0xCF9 with PCI: stops %q", *stops)
	}
	if b.Ports.Unclaimed != 0 {
		t.Errorf("%d unclaimed port accesses", b.Ports.Unclaimed)
	}
}

// The BAR answers where the guest puts it, only while memory decoding is
// on; the rest of the window reads all ones.
func TestNetBoardBARFollowsGuest(t *testing.T) {
	b, _ := newNetBoard(t, 2)
	mac := func(cpu int, base uint64) []byte {
		var m [6]byte
		b.MMIO[cpu].Read(base+virtionet.DeviceOffset, m[:])
		return m[:]
	}
	ones := bytes.Repeat([]byte{0xFF}, 6)
	if got := mac(1, NetBARBase); !bytes.Equal(got, testMAC[:]) {
		t.Fatalf("MAC at the firmware's BAR: % x", got)
	}
	moved := uint64(NetBARBase + 0x100000)
	cfgWrite(b, NetPCIDevice, pci.BAR0Offset, 4, uint32(moved))
	if got := mac(0, moved); !bytes.Equal(got, testMAC[:]) {
		t.Errorf("MAC at the moved BAR: % x", got)
	}
	if got := mac(0, NetBARBase); !bytes.Equal(got, ones) {
		t.Errorf("the old BAR still answers: % x", got)
	}
	cfgWrite(b, NetPCIDevice, pci.CommandOffset, 2, 0)
	if got := mac(0, moved); !bytes.Equal(got, ones) {
		t.Errorf("the BAR answers with memory decoding off: % x", got)
	}
	if b.MMIO[0].Unclaimed != 0 {
		t.Errorf("%d unclaimed MMIO accesses inside the window", b.MMIO[0].Unclaimed)
	}
}

// INTA# of the NIC reaches the IOAPIC pin the DSDT's _PRT names (level,
// re-raised while asserted after the EOI) and wakes the vCPUs.
func TestNetBoardINTxToIOAPIC(t *testing.T) {
	b, _ := newNetBoard(t, 1)
	gsi := acpi.PCIIRQ(NetPCIDevice, 1)
	b.LAPICs[0].MMIOWrite(lapic.RegSVR, []byte{0xFF, 0x01, 0, 0})
	w32 := func(off uint64, v uint32) {
		b.MMIO[0].Write(ioapic.DefaultBase+off, []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
	}
	w32(0, 0x10+2*gsi)
	w32(0x10, 0x51|1<<15) // vector 0x51, level-triggered
	w32(0, 0x10+2*gsi+1)
	w32(0x10, 0)
	b.Ports.Out(0x21, 1, 0xFF) // PIC masked, as under ACPI
	b.Ports.Out(0xA1, 1, 0xFF)
	select {
	case <-b.Wake[0]:
	default:
	}
	b.Net.Config().SetINTx(true)
	select {
	case <-b.Wake[0]:
	default:
		t.Error("INTx did not wake vCPU 0")
	}
	v, ok := b.Source(0).TakeInterrupt()
	if !ok || v != 0x51 {
		t.Fatalf("vCPU 0 took %#x, %v; want 0x51", v, ok)
	}
	b.LAPICs[0].MMIOWrite(0xB0, []byte{0, 0, 0, 0}) // EOI: the line is still high
	if v, ok := b.Source(0).TakeInterrupt(); !ok || v != 0x51 {
		t.Errorf("after EOI with INTx still asserted: %#x, %v; want 0x51 again", v, ok)
	}
	b.Net.Config().SetINTx(false) // the driver read the ISR
	b.LAPICs[0].MMIOWrite(0xB0, []byte{0, 0, 0, 0})
	if b.Source(0).InterruptPending() {
		t.Error("interrupt pending after INTx went low and the EOI")
	}
}

// Without ACPI a guest takes the Interrupt Line: the PIC's IRQ 11.
func TestNetBoardINTxToPIC(t *testing.T) {
	b, _ := newNetBoard(t, 1)
	for _, w := range []struct {
		port uint16
		v    uint32
	}{
		{0x20, 0x11}, {0x21, 0x30}, {0x21, 0x04}, {0x21, 0x01},
		{0xA0, 0x11}, {0xA1, 0x38}, {0xA1, 0x02}, {0xA1, 0x01},
		{0x21, 0x00}, {0xA1, 0x00},
	} {
		b.Ports.Out(w.port, 1, w.v)
	}
	b.Net.Config().SetINTx(true)
	if v, ok := b.Source(0).TakeInterrupt(); !ok || v != 0x38+PICIRQNet-8 {
		t.Errorf("took %#x, %v; want the slave PIC's IRQ %d", v, ok, PICIRQNet)
	}
}

func TestNetBoardACPIAndState(t *testing.T) {
	b, _ := newNetBoard(t, 1)
	tb, err := b.ACPITables()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(tb.Bytes, []byte("PCI0")) || !bytes.Contains(tb.Bytes, []byte("_PRT")) {
		t.Error("the DSDT has no PCI host bridge with a _PRT")
	}
	plain, _, _ := newTestBoard(t, 1)
	tp, err := plain.ACPITables()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(tp.Bytes, []byte("PCI0")) {
		t.Error("a board without a NIC describes PCI")
	}
	var names []string
	for _, d := range b.Snapshotters() {
		names = append(names, d.Name)
	}
	if names[len(names)-1] != "pci" {
		t.Fatalf("devices %v: want the PCI bus last", names)
	}
	for _, d := range plain.Snapshotters() {
		if d.Name == "pci" {
			t.Error("a board without a NIC saves a PCI bus")
		}
	}
	// A frame held before the driver is up is refused; the bus's state
	// (with the NIC's) moves to another board.
	if b.NetReceive(make([]byte, 60)) {
		t.Error("the NIC took a frame before its driver was ready")
	}
	cfgWrite(b, NetPCIDevice, pci.BAR0Offset, 4, NetBARBase+0x80000)
	st, err := b.PCI.Save()
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newNetBoard(t, 1)
	if err := c.PCI.Restore(st); err != nil {
		t.Fatal(err)
	}
	if got := c.Net.Config().BARAddress(virtionet.BAR); got != NetBARBase+0x80000 {
		t.Errorf("restored BAR %#x", got)
	}
	if got := c.Net.Stats().RxDroppedNotReady; got != 1 {
		t.Errorf("restored counters: %d frames dropped before ready, want 1", got)
	}
}

// The bus's saved state is taken under the board's lock, which the
// host's receive side holds too (NetReceiveSeq), so no frame is taken in
// the middle of a save.
func TestNetSaveHoldsBoardLock(t *testing.T) {
	b, _ := newNetBoard(t, 1)
	var bus devices.Snapshotter
	for _, d := range b.Snapshotters() {
		if d.Name == "pci" {
			bus = d.State
		}
	}
	if bus == nil {
		t.Fatal("no pci snapshotter")
	}
	b.Devices.Lock()
	saved := make(chan error, 1)
	go func() {
		_, err := bus.Save()
		saved <- err
	}()
	select {
	case <-saved:
		b.Devices.Unlock()
		t.Fatal("the bus saved while another holder had the board's lock")
	case <-time.After(50 * time.Millisecond):
	}
	b.Devices.Unlock()
	if err := <-saved; err != nil {
		t.Fatal(err)
	}
}
