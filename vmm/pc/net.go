package pc

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/acpi"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
	"github.com/doppel-ft/doppel/vmm/netbridge"
)

// The guest's network: with BoardConfig.Net the board gets PCI bus 0
// (configuration mechanism #1 at ports 0xCF8-0xCFF, which also carries
// the reset control register at 0xCF9) with the virtio-net function at
// 00:03.0, as firmware leaves it: BAR 0 assigned at NetBARBase inside the
// host bridge's memory window, memory decoding and bus mastering on, the
// Interrupt Line register naming PICIRQNet. INTA# of device 3 is PIRQD by
// the swizzle. Each PIRQ line drives IOAPIC pin acpi.PCIIRQBase+n (GSIs
// 16-19, level-triggered by the DSDT's _PRT, which is how Linux routes it
// under ACPI) and PIC pin PICIRQNet (how a guest without ACPI tables,
// which scans PCI itself and takes the Interrupt Line, routes it), and
// wakes the vCPUs.

// PCI layout of the guest.
const (
	// NetPCIDevice is the virtio-net function's device number on bus 0.
	NetPCIDevice = 3
	// PCIWindowBase and PCIWindowSize are the host bridge's 32-bit memory
	// window for BARs (the DSDT's _CRS): above guest RAM (which ends at
	// loader.PCIHole below 4 GiB) and below the IOAPIC.
	PCIWindowBase = 0xE0000000
	PCIWindowSize = 0x1EC00000
	// NetBARBase is where BAR 0 of the virtio-net function starts.
	NetBARBase = PCIWindowBase
	// PICIRQNet is the ISA IRQ the PIRQ lines also drive on the PIC.
	PICIRQNet = 11
)

// NetConfig gives the guest a virtio-net NIC.
type NetConfig struct {
	// MAC is the guest's Ethernet address.
	MAC [6]byte
	// Backend takes the frames the guest transmits (at a VM exit, with
	// the board's lock held: it must not block).
	Backend virtionet.Backend
	// Memory is guest RAM as the device reads and writes it (its rings
	// and buffers).
	Memory virtio.GuestMemory
}

// netConfig is the board's NIC for a Run with bridge br over guest RAM
// mem (nil without a bridge).
func netConfig(br *netbridge.Bridge, mem vmm.GuestMemory) *NetConfig {
	if br == nil {
		return nil
	}
	return &NetConfig{MAC: br.MAC(), Backend: br, Memory: virtio.ByteMemory(mem)}
}

// addNet builds the PCI bus and the virtio-net function and puts them on
// the port and MMIO buses.
func (b *Board) addNet(c *NetConfig) error {
	var pirqs [4]devices.Line
	toPIC := &orLines{out: b.PIC.Pin(PICIRQNet)}
	for i := range pirqs {
		pirqs[i] = fanout(b.IOAPIC.Pin(acpi.PCIIRQBase+i), toPIC.input(i), devices.LineFunc(func(high bool) {
			if high {
				b.wakeAll()
			}
		}))
	}
	b.PCI = pci.NewBus(pirqs)
	b.PCI.CF9 = b.Reset
	d, err := virtionet.New(c.Memory, c.Backend, virtionet.Options{MAC: c.MAC})
	if err != nil {
		return fmt.Errorf("pc: guest NIC: %w", err)
	}
	if err := b.PCI.Add(NetPCIDevice, 0, d); err != nil {
		return fmt.Errorf("pc: guest NIC: %w", err)
	}
	d.WriteConfig(pci.BAR0Offset+4*virtionet.BAR, 4, NetBARBase)
	d.WriteConfig(pci.CommandOffset, 2, pci.CommandMemory|pci.CommandBusMaster)
	d.Config().SetInterruptLine(PICIRQNet)
	b.Net = d
	w := &pciWindow{net: d}
	for _, mm := range b.MMIO {
		if err := mm.Add("pci-window", PCIWindowBase, PCIWindowSize, w); err != nil {
			return err
		}
	}
	return b.Ports.Add("pci", pci.ConfigPort, pci.ConfigSize, b.PCI)
}

// orLines drives out with the OR of four inputs (the PIRQ lines sharing
// one PIC pin).
type orLines struct {
	out    devices.Line
	levels [4]bool
	high   bool
}

func (o *orLines) input(i int) devices.Line {
	return devices.LineFunc(func(high bool) {
		o.levels[i] = high
		any := o.levels[0] || o.levels[1] || o.levels[2] || o.levels[3]
		if any != o.high {
			o.high = any
			o.out.Set(any)
		}
	})
}

// pciWindow is the host bridge's memory window: an access reaches the
// function whose enabled BAR holds it (the guest may move the BAR); the
// rest of the window reads all ones and ignores writes, as a master
// abort does.
type pciWindow struct {
	net *virtionet.Device
}

func (w *pciWindow) bar(off uint64) (uint64, bool) {
	gpa := PCIWindowBase + off
	cfg := w.net.Config()
	base := cfg.BARAddress(virtionet.BAR)
	if cfg.Command()&pci.CommandMemory == 0 || gpa < base || gpa-base >= virtionet.BARSize {
		return 0, false
	}
	return gpa - base, true
}

func (w *pciWindow) MMIORead(off uint64, data []byte) {
	if o, ok := w.bar(off); ok {
		w.net.MMIORead(o, data)
		return
	}
	for i := range data {
		data[i] = 0xFF
	}
}

func (w *pciWindow) MMIOWrite(off uint64, data []byte) {
	if o, ok := w.bar(off); ok {
		w.net.MMIOWrite(o, data)
	}
}

// NetReceive hands one frame from the outside to the guest's NIC, under
// the board's lock; false if the device did not take it (no NIC, not
// ready, held queue full). The device raises its interrupt, which wakes
// the vCPUs.
func (b *Board) NetReceive(frame []byte) bool {
	_, ok := b.NetReceiveSeq(frame)
	return ok
}

// NetReceiveSeq is NetReceive that also returns the receive sequence
// number the device gave the frame (virtionet.Device.RxSeq), under the
// board's lock, which the bus's Save also holds (Snapshotters): the
// number says exactly whether a checkpoint holds the frame.
func (b *Board) NetReceiveSeq(frame []byte) (uint64, bool) {
	if b.Net == nil {
		return 0, false
	}
	b.Devices.Lock()
	defer b.Devices.Unlock()
	if !b.Net.Receive(frame) {
		return 0, false
	}
	return b.Net.RxSeq(), true
}

// NetRxSeq is the guest NIC's receive sequence number (0 without a NIC).
func (b *Board) NetRxSeq() uint64 {
	if b.Net == nil {
		return 0
	}
	b.Devices.Lock()
	defer b.Devices.Unlock()
	return b.Net.RxSeq()
}

// NetQuiescer holds the guest NIC's received frames during a checkpoint
// pause (F5), under the board's lock (vmguest.Quiescer).
func (b *Board) NetQuiescer() interface{ Quiesce(on bool) } { return netQuiescer{b} }

type netQuiescer struct{ b *Board }

func (q netQuiescer) Quiesce(on bool) {
	q.b.Devices.Lock()
	defer q.b.Devices.Unlock()
	q.b.Net.Quiesce(on)
}

// ACPITablesFor builds the tables of a board with cpus vCPUs, with the
// PCI host bridge when withPCI (Board.ACPITables for a built board).
func ACPITablesFor(cpus int, withPCI bool) (*acpi.Tables, error) {
	c := acpi.Config{NumCPUs: cpus, PIC: true, PIT: true, RTC: true, COM1: true}
	if withPCI {
		c.PCI = &acpi.PCIConfig{MMIOBase: PCIWindowBase, MMIOSize: PCIWindowSize}
	}
	return acpi.Build(c, ACPIBase)
}

var _ vmm.MMIODevice = (*pciWindow)(nil)
