// Package pc assembles a PC-compatible guest from doppel's parts: guest
// RAM with a PC memory map, the legacy devices (16550 UART, 8259 PIC pair,
// 8254 PIT, MC146818 RTC, fw_cfg, debug exit, reset control), an IOAPIC,
// one local APIC per vCPU, and the loaded kernel's start state; Run boots
// it on VT-x as a vmm.Machine.
//
// Interrupt wiring (as on a PC, and as Linux expects without ACPI
// overrides): the UART drives ISA IRQ 4, the PIT IRQ 0, the RTC IRQ 8;
// each ISA IRQ goes to the PIC pin of its number and to the IOAPIC pin of
// its number (IRQ 0 to IOAPIC pin 2, the usual ISA override). The PIC's
// INTR output is the boot vCPU's LINT0 (virtual wire, ExtINT); the IOAPIC
// and the LAPICs' IPIs go through a lapic.Router. A halted vCPU is woken
// whenever an interrupt may have reached it.
//
// With BoardConfig.Net the board also has PCI bus 0 with a virtio-net
// function (net.go says how it is wired).
//
// Concurrency: one mutex (Board.Devices) serialises every access to the
// shared devices, through the buses and the timer polls; the LAPICs lock
// themselves.
package pc

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/acpi"
	"github.com/doppel-ft/doppel/vmm/devices/debugexit"
	"github.com/doppel-ft/doppel/vmm/devices/fwcfg"
	"github.com/doppel-ft/doppel/vmm/devices/ioapic"
	"github.com/doppel-ft/doppel/vmm/devices/lapic"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/pic"
	"github.com/doppel-ft/doppel/vmm/devices/pit"
	"github.com/doppel-ft/doppel/vmm/devices/reset"
	"github.com/doppel-ft/doppel/vmm/devices/rtc"
	"github.com/doppel-ft/doppel/vmm/devices/uart"
	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
)

// ISA IRQs.
const (
	IRQPIT  = 0
	IRQCOM1 = 4
	IRQRTC  = 8
	COM1    = 0x3F8
)

// LAPIC LVT registers (SDM Vol. 3A table 11-1).
const (
	lapicLINT0 = 0x350
	lapicLINT1 = 0x360
)

// BoardConfig describes the devices.
type BoardConfig struct {
	CPUs    int
	MemSize uint64
	// Console receives the guest's COM1 output.
	Console io.Writer
	// Clock is the guest's time; TSCHz its TSC rate.
	Clock devices.Clock
	TSCHz uint64
	// BusHz is the LAPIC timer's input clock, the crystal CPUID 0x15
	// reports (vmm.CrystalFor); 0 is the lapic package's default.
	BusHz uint64
	// OnStop is called (once per event, with the device lock held) when
	// the guest ends the run: debug-exit write, reset request.
	OnStop func(reason string)
	// Start is the RTC's wall time at guest time 0.
	Start time.Time
	// Net, if set, gives the guest a virtio-net NIC on a PCI bus.
	Net *NetConfig
}

// Board is a PC's devices, wired.
type Board struct {
	Devices sync.Mutex
	Ports   *vmm.IOBus
	// MMIO is each vCPU's MMIO bus: the shared IOAPIC and its own LAPIC
	// at the same address.
	MMIO   []*vmm.MMIOBus
	UART   *uart.UART
	PIC    *pic.Pair
	PIT    *pit.PIT
	RTC    *rtc.RTC
	IOAPIC *ioapic.IOAPIC
	LAPICs []*lapic.LAPIC
	Router *lapic.Router
	FwCfg  *fwcfg.Device
	Exit   *debugexit.Device
	Reset  *reset.Control
	Sleep  *acpi.Sleep
	// PCI and Net are the PCI bus and the guest's NIC (nil without
	// BoardConfig.Net).
	PCI *pci.Bus
	Net *virtionet.Device
	// Wake is each vCPU's wakeup channel (capacity 1).
	Wake []chan struct{}
	// ExitStatus is the last debug-exit status (QEMU's code*2+1), 0 if
	// none.
	ExitStatus uint64
}

// wakingSink delivers messages to the LAPICs and wakes every vCPU, since
// the destination may be halted.
type wakingSink struct {
	r *lapic.Router
	b *Board
}

func (s wakingSink) Deliver(m devices.Message) {
	s.r.Deliver(m)
	s.b.wakeAll()
}

func (b *Board) wakeAll() {
	for _, w := range b.Wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// fanout drives several lines from one source.
func fanout(lines ...devices.Line) devices.Line {
	return devices.LineFunc(func(high bool) {
		for _, l := range lines {
			l.Set(high)
		}
	})
}

// NewBoard builds and wires the devices.
func NewBoard(c BoardConfig) (*Board, error) {
	if c.CPUs < 1 || c.CPUs > 32 {
		return nil, fmt.Errorf("pc: %d vCPUs (want 1 to 32)", c.CPUs)
	}
	b := &Board{Ports: &vmm.IOBus{}, Router: lapic.NewRouter()}
	b.Ports.Lock = &b.Devices
	for i := 0; i < c.CPUs; i++ {
		b.Wake = append(b.Wake, make(chan struct{}, 1))
	}
	sink := wakingSink{b.Router, b}
	b.IOAPIC = ioapic.New(uint8(c.CPUs), sink)
	for i := 0; i < c.CPUs; i++ {
		l := lapic.New(lapic.Config{ID: uint32(i), BSP: i == 0, Clock: c.Clock, TSCHz: c.TSCHz, BusHz: c.BusHz,
			Sink: sink, EOI: []devices.EOIListener{b.IOAPIC}})
		b.Router.Add(l)
		b.LAPICs = append(b.LAPICs, l)
		mm := &vmm.MMIOBus{Lock: &b.Devices}
		if err := mm.Add("ioapic", ioapic.DefaultBase, 0x1000, b.IOAPIC); err != nil {
			return nil, err
		}
		if err := mm.Add("lapic", lapic.DefaultBase, 0x1000, l); err != nil {
			return nil, err
		}
		b.MMIO = append(b.MMIO, mm)
	}
	// What firmware leaves a PC in (MP spec 3.6.2.2 virtual wire mode):
	// the boot vCPU's LINT0 takes the PIC's INTR as ExtINT, LINT1 is NMI.
	// The LVT can only be unmasked with the APIC software-enabled (SVR
	// bit 8, spurious vector 0xFF; SDM Vol. 3A 11.4.7.2).
	b.LAPICs[0].MMIOWrite(lapic.RegSVR, []byte{0xFF, 0x01, 0, 0})
	b.LAPICs[0].MMIOWrite(lapicLINT0, []byte{0x00, 0x07, 0, 0})
	b.LAPICs[0].MMIOWrite(lapicLINT1, []byte{0x00, 0x04, 0, 0})
	// The PIC's INTR is the boot vCPU's LINT0; it wakes that vCPU.
	lint0 := b.LAPICs[0].LINT0()
	b.PIC = pic.New(devices.LineFunc(func(high bool) {
		lint0.Set(high)
		if high {
			select {
			case b.Wake[0] <- struct{}{}:
			default:
			}
		}
	}))
	isa := func(irq, ioapicPin int) devices.Line {
		return fanout(b.PIC.Pin(irq), b.IOAPIC.Pin(ioapicPin), devices.LineFunc(func(high bool) {
			if high {
				b.wakeAll()
			}
		}))
	}
	b.UART = uart.New(c.Console, isa(IRQCOM1, IRQCOM1))
	b.PIT = pit.New(c.Clock, isa(IRQPIT, 2))
	start := c.Start
	if start.IsZero() {
		start = time.Now()
	}
	b.RTC = rtc.New(c.Clock, isa(IRQRTC, IRQRTC), start)
	below := min(c.MemSize, 0xC000_0000)
	b.RTC.SetMemorySize(below, c.MemSize-below)
	b.FwCfg = fwcfg.New(uint16(c.CPUs), c.MemSize)
	stop := func(reason string) {
		if c.OnStop != nil {
			c.OnStop(reason)
		}
	}
	b.Exit = debugexit.New(func(status uint64) {
		b.ExitStatus = status
		stop(fmt.Sprintf("debug exit, status %d (code %d)", status, status>>1))
	})
	b.Reset = reset.New(func(k reset.Kind) { stop(fmt.Sprintf("%v reset", k)) })
	b.Sleep = acpi.NewSleep(func() { stop("ACPI power-off (S5)") })
	for _, p := range []struct {
		name string
		base uint16
		n    int
		dev  vmm.PortDevice
	}{
		{"com1", COM1, uart.NumRegs, b.UART},
		{"pic-master", pic.MasterPort, 2, b.PIC.Master()},
		{"pic-slave", pic.SlavePort, 2, b.PIC.Slave()},
		{"elcr", pic.ELCRPort, 2, b.PIC.ELCR()},
		{"pit", pit.Port, 4, b.PIT},
		{"speaker", pit.SpeakerPort, 1, b.PIT.Speaker()},
		{"rtc", rtc.Port, 2, b.RTC},
		{"fw_cfg", fwcfg.Port, fwcfg.Size, b.FwCfg},
		{"debug-exit", debugexit.Port, debugexit.Size, b.Exit},
		{"acpi-sleep", acpi.DefaultSleepPort, 2, b.Sleep},
	} {
		if err := b.Ports.Add(p.name, p.base, p.n, p.dev); err != nil {
			return nil, err
		}
	}
	// Port 0xCF9 is inside the PCI configuration ports: with PCI the bus
	// passes it on to the reset control.
	if c.Net != nil {
		if err := b.addNet(c.Net); err != nil {
			return nil, err
		}
	} else if err := b.Ports.Add("reset", reset.Port, 1, b.Reset); err != nil {
		return nil, err
	}
	return b, nil
}

// ACPIBase is where the ACPI tables go in guest memory: inside the BIOS
// area 0xE0000-0xFFFFF (reserved in the PC layout), where Linux's RSDP
// scan also looks (vmm/devices/acpi doc).
const ACPIBase = 0xE0000

// ACPITables builds the tables for this board: every vCPU's LAPIC, the
// IOAPIC, COM1 with IRQ 4, the PIT's IRQ 0 override, the sleep and reset
// registers (HW-reduced ACPI: Linux then uses the LAPIC timer and the
// IOAPIC, not the PIC and PIT), and the PCI host bridge if there is PCI.
func (b *Board) ACPITables() (*acpi.Tables, error) {
	return ACPITablesFor(len(b.LAPICs), b.PCI != nil)
}

// Timers returns the timers vCPU i polls: the shared PIT and RTC, and its
// own LAPIC.
func (b *Board) Timers(i int) []devices.Timer {
	return []devices.Timer{b.PIT, b.RTC, b.LAPICs[i]}
}

// Snapshotters lists every device's state for Machine.AddDevice, in a
// fixed order with unique names.
func (b *Board) Snapshotters() []vmm.Device {
	d := []vmm.Device{
		{Name: "uart", State: b.UART}, {Name: "pic", State: b.PIC}, {Name: "pit", State: b.PIT},
		{Name: "rtc", State: b.RTC}, {Name: "ioapic", State: b.IOAPIC}, {Name: "fw_cfg", State: b.FwCfg},
		{Name: "debug-exit", State: b.Exit}, {Name: "reset", State: b.Reset}, {Name: "acpi-sleep", State: b.Sleep},
	}
	for i, l := range b.LAPICs {
		d = append(d, vmm.Device{Name: fmt.Sprintf("lapic%d", i), State: l})
	}
	if b.PCI != nil {
		// The bus saves its functions, the NIC with its held frames,
		// under the board's lock: the host's receive side (NetReceive)
		// runs while the vCPUs are paused, and a frame taken in the
		// middle of a save would be in its held frames but not in its
		// receive sequence number (a takeover would replay it twice).
		d = append(d, vmm.Device{Name: "pci", State: lockedState{&b.Devices, b.PCI}})
	}
	return d
}

// lockedState saves and restores s holding mu.
type lockedState struct {
	mu *sync.Mutex
	s  devices.Snapshotter
}

func (l lockedState) Save() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s.Save()
}

func (l lockedState) Restore(state []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s.Restore(state)
}

// Source is vCPU i's interrupt source for the injector: its LAPIC and,
// on the boot vCPU, the PIC through ExtINT.
func (b *Board) Source(i int) vmm.InterruptSource { return &irqSource{b: b, l: b.LAPICs[i]} }

type irqSource struct {
	b *Board
	l *lapic.LAPIC
}

func (s *irqSource) InterruptPending() bool {
	if s.l.ExtINTPending() {
		return true
	}
	_, ok := s.l.PendingVector()
	return ok
}

func (s *irqSource) TakeInterrupt() (uint8, bool) {
	if s.l.ExtINTPending() {
		s.b.Devices.Lock()
		v := s.b.PIC.Acknowledge()
		s.b.Devices.Unlock()
		s.l.AckExtINT()
		return v, true
	}
	v, ok := s.l.PendingVector()
	if ok {
		s.l.Ack(v)
	}
	return v, ok
}
