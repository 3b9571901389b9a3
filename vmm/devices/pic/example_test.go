package pic_test

import (
	"fmt"
	"io"
	"time"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/devtest"
	"github.com/doppel-ft/doppel/vmm/devices/i8042"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/pic"
	"github.com/doppel-ft/doppel/vmm/devices/pit"
	"github.com/doppel-ft/doppel/vmm/devices/rtc"
	"github.com/doppel-ft/doppel/vmm/devices/uart"
)

// Example wires the legacy devices to the PIC pair the way a PC does
// (IRQ0 timer, IRQ1 keyboard, IRQ4 COM1, IRQ8 RTC, PCI INTx through PIRQ
// lines to level-triggered IRQ10/11) and runs the INTA cycles a vCPU
// would, after programming everything as Linux does.
func Example() {
	clk := &devtest.Clock{}
	intr := &devtest.Line{}
	pics := pic.New(intr)
	m, s := pics.Master(), pics.Slave()
	for _, w := range []struct {
		p   *pic.Port
		off uint16
		v   uint32
	}{
		{m, 0, 0x11}, {m, 1, 0x30}, {m, 1, 0x04}, {m, 1, 0x01}, // ICW1-4
		{s, 0, 0x11}, {s, 1, 0x38}, {s, 1, 0x02}, {s, 1, 0x01},
		{m, 1, 0x00}, {s, 1, 0x00}, // unmask all
	} {
		w.p.PortOut(w.off, 1, w.v)
	}
	pics.ELCR().PortOut(0, 2, 0x0C00) // IRQ10 and IRQ11 level-triggered

	timer := pit.New(clk, pics.Pin(0))
	kbd := i8042.New(pics.Pin(1), pics.Pin(12), func() {})
	com1 := uart.New(io.Discard, pics.Pin(4))
	cmos := rtc.New(clk, pics.Pin(8), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	bus := pci.NewBus([4]devices.Line{pics.Pin(10), pics.Pin(11), pics.Pin(10), pics.Pin(11)})
	nic, _ := pci.NewConfig(pci.Header{VendorID: 0x1AF4, DeviceID: 0x1000, InterruptPin: 1})
	bus.Add(1, 0, nic) // INTA of device 1: PIRQB, IRQ11

	ack := func(what string) {
		high := intr.High
		fmt.Printf("%-22s INTR %v vector %#x\n", what, high, pics.Acknowledge())
		m.PortOut(0, 1, 0x20) // EOI both, as Linux does for slave IRQs
		s.PortOut(0, 1, 0x20)
	}

	timer.PortOut(3, 1, 0x34) // counter 0, LSB then MSB, mode 2
	timer.PortOut(0, 1, 0xA9)
	timer.PortOut(0, 1, 0x04) // 1193: 1 kHz
	clk.T, _ = timer.NextDeadline()
	timer.Poll(clk.T)
	ack("PIT period")

	kbd.PortOut(0, 1, 0xF2) // identify: the ACK arrives on IRQ1
	ack("keyboard")

	com1.PortOut(1, 1, 0x02) // IER: THR empty
	ack("COM1 THRE")
	com1.PortOut(1, 1, 0x00)

	cmos.PortOut(0, 1, 0x0B)
	cmos.PortOut(1, 1, 0x42) // PIE, 24-hour
	clk.T, _ = cmos.NextDeadline()
	cmos.Poll(clk.T)
	ack("RTC periodic")
	cmos.PortOut(0, 1, 0x0C)
	cmos.PortIn(1, 1) // reading C lowers IRQ8

	nic.SetINTx(true)
	ack("PCI INTx (level)")
	ack("still asserted")
	// Withdrawn after the master latched its cascade edge: the slave
	// answers its spurious IR7, as a real pair does.
	nic.SetINTx(false)
	ack("withdrawn")
	ack("nothing")
	// Output:
	// PIT period             INTR true vector 0x30
	// keyboard               INTR true vector 0x31
	// COM1 THRE              INTR true vector 0x34
	// RTC periodic           INTR true vector 0x38
	// PCI INTx (level)       INTR true vector 0x3b
	// still asserted         INTR true vector 0x3b
	// withdrawn              INTR true vector 0x3f
	// nothing                INTR false vector 0x37
}
