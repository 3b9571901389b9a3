package pic

import "github.com/doppel-ft/doppel/vmm/devices"

const (
	stateMagic   = "PIC2"
	stateVersion = 1
)

// Save implements devices.Snapshotter (format in the package doc).
func (p *Pair) Save() ([]byte, error) {
	e := devices.NewEncoder(stateMagic, stateVersion)
	for i := range p.chips {
		c := &p.chips[i]
		for _, b := range []uint8{c.irr, c.isr, c.imr, c.pins, c.elcr, c.prioAdd, c.base, c.icw1, c.icw3, c.icw4, c.initStep} {
			e.U8(b)
		}
		e.Bool(c.readISR)
		e.Bool(c.poll)
		e.Bool(c.rotateAEOI)
	}
	return e.Finish(), nil
}

// Restore implements devices.Snapshotter and drives INTR to the restored
// level.
func (p *Pair) Restore(state []byte) error {
	d := devices.NewDecoder(state, stateMagic, stateVersion)
	var cs [2]chip
	for i := range cs {
		c := &cs[i]
		for _, f := range []*uint8{&c.irr, &c.isr, &c.imr, &c.pins, &c.elcr, &c.prioAdd, &c.base, &c.icw1, &c.icw3, &c.icw4, &c.initStep} {
			*f = d.U8()
		}
		c.readISR = d.Bool()
		c.poll = d.Bool()
		c.rotateAEOI = d.Bool()
		d.Check(c.elcr&^elcrMask[i] == 0, "ELCR%d %#x", i+1, c.elcr)
		d.Check(c.prioAdd < 8, "priority %d", c.prioAdd)
		d.Check(c.base&7 == 0, "vector base %#x", c.base)
		d.Check(c.icw1&^icw1Mask == 0, "ICW1 %#x", c.icw1)
		d.Check(c.icw4&^icw4Mask == 0, "ICW4 %#x", c.icw4)
		d.Check(c.initStep == 0 || (c.initStep >= 2 && c.initStep <= 4), "init step %d", c.initStep)
		d.Check(c.irr&c.levelMask() == c.pins&c.levelMask(), "level-triggered IRR %#x with inputs %#x", c.irr, c.pins)
	}
	d.Check(cs[0].pins&(1<<CascadeIRQ) == 0 == (cs[1].pending() < 0), "cascade input disagrees with the slave")
	if err := d.Finish(); err != nil {
		return err
	}
	p.chips = cs
	p.level = p.chips[0].pending() >= 0
	p.intr.Set(p.level)
	return nil
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*Port)(nil)
	_ devices.Snapshotter = (*Pair)(nil)
)
