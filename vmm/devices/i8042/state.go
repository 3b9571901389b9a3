package i8042

import "github.com/doppel-ft/doppel/vmm/devices"

const (
	stateMagic   = "8042"
	stateVersion = 1
)

// Save implements devices.Snapshotter (format in the package doc).
func (c *Controller) Save() ([]byte, error) {
	e := devices.NewEncoder(stateMagic, stateVersion)
	e.Bytes(c.ram[:])
	e.U8(c.out)
	e.Bool(c.sys)
	e.Bool(c.a2)
	e.Bool(c.timeout)
	e.U8(c.pending)
	q := make([]byte, 0, 2*len(c.queue))
	for _, x := range c.queue {
		src := byte(0)
		if x.aux {
			src = 1
		}
		q = append(q, x.b, src)
	}
	e.Bytes(q)
	e.U8(c.last)
	e.U8(c.kbdPending)
	e.Bool(c.kbdScan)
	e.U8(c.kbdSet)
	e.U8(c.kbdLEDs)
	return e.Finish(), nil
}

func validPending(cmd uint8) bool {
	return cmd == 0 || cmd >= CmdWriteCTR && cmd < CmdWriteCTR+32 ||
		cmd == CmdWriteOutput || cmd == CmdWriteKbdBuf || cmd == CmdWriteAuxBuf || cmd == CmdWriteAux
}

// Restore implements devices.Snapshotter and drives IRQ1 and IRQ12 to
// the restored levels.
func (c *Controller) Restore(state []byte) error {
	d := devices.NewDecoder(state, stateMagic, stateVersion)
	ram := d.Bytes(32)
	out := d.U8()
	sys, a2, timeout := d.Bool(), d.Bool(), d.Bool()
	pending := d.U8()
	q := d.Bytes(2 * queueMax)
	last := d.U8()
	kp := d.U8()
	scan := d.Bool()
	set := d.U8()
	leds := d.U8()
	d.Check(len(ram) == 32, "%d RAM bytes", len(ram))
	d.Check(out&OutResetLine != 0, "output port %#x holds reset", out)
	d.Check(validPending(pending), "pending command %#x", pending)
	d.Check(len(q)%2 == 0, "odd queue")
	var queue []entry
	for i := 0; i+1 < len(q); i += 2 {
		d.Check(q[i+1] <= 1, "queue source %d", q[i+1])
		queue = append(queue, entry{q[i], q[i+1] == 1})
	}
	d.Check(kp == 0 || kp == 0xED || kp == 0xF0 || kp == 0xF3, "keyboard pending %#x", kp)
	d.Check(set >= 1 && set <= 3, "scan-code set %d", set)
	d.Check(leds <= 7, "LEDs %#x", leds)
	if err := d.Finish(); err != nil {
		return err
	}
	copy(c.ram[:], ram)
	c.out, c.sys, c.a2, c.timeout, c.pending = out, sys, a2, timeout, pending
	c.queue, c.last = queue, last
	c.kbdPending, c.kbdScan, c.kbdSet, c.kbdLEDs = kp, scan, set, leds
	c.l1, c.l12 = c.levels()
	c.irq1.Set(c.l1)
	c.irq12.Set(c.l12)
	return nil
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*Controller)(nil)
	_ devices.Snapshotter = (*Controller)(nil)
)
