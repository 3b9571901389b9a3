package pit

import "github.com/doppel-ft/doppel/vmm/devices"

const (
	stateMagic   = "PIT4"
	stateVersion = 1
)

// Save implements devices.Snapshotter (format in the package doc).
func (p *PIT) Save() ([]byte, error) {
	e := devices.NewEncoder(stateMagic, stateVersion)
	for i := range p.ch {
		c := &p.ch[i]
		e.U8(c.mode)
		e.U8(c.rw)
		e.Bool(c.bcd)
		e.U32(c.reload)
		e.Bool(c.loaded)
		e.Bool(c.gate)
		e.Bool(c.running)
		e.I64(c.runStart)
		e.U64(c.paused)
		e.U64(c.seen)
		e.Bool(c.out)
		e.Bool(c.writeMSB)
		e.U8(c.lsb)
		e.Bool(c.readMSB)
		e.Bool(c.latched)
		e.U16(c.latch)
		e.Bool(c.statusLatched)
		e.U8(c.status)
		e.Bool(c.nullCount)
	}
	e.U8(p.nmisc)
	return e.Finish(), nil
}

// Restore implements devices.Snapshotter and drives IRQ0 to the restored
// level of counter 0's OUT.
func (p *PIT) Restore(state []byte) error {
	d := devices.NewDecoder(state, stateMagic, stateVersion)
	var cs [3]channel
	for i := range cs {
		c := &cs[i]
		c.mode = d.U8()
		c.rw = d.U8()
		c.bcd = d.Bool()
		c.reload = d.U32()
		c.loaded = d.Bool()
		c.gate = d.Bool()
		c.running = d.Bool()
		c.runStart = d.I64()
		c.paused = d.U64()
		c.seen = d.U64()
		c.out = d.Bool()
		c.writeMSB = d.Bool()
		c.lsb = d.U8()
		c.readMSB = d.Bool()
		c.latched = d.Bool()
		c.latch = d.U16()
		c.statusLatched = d.Bool()
		c.status = d.U8()
		c.nullCount = d.Bool()
		d.Check(c.mode <= 5, "counter %d mode %d", i, c.mode)
		d.Check(c.rw >= RWLSB && c.rw <= RWLSBMSB, "counter %d RW %d", i, c.rw)
		d.Check(c.reload >= 1 && c.reload <= 0x10000, "counter %d count %d", i, c.reload)
		d.Check(i == 2 || c.gate, "counter %d gate low", i)
		d.Check(c.runStart >= 0, "counter %d start %d", i, c.runStart)
	}
	nmisc := d.U8()
	d.Check(nmisc&^nmiscWritable == 0, "port 0x61 %#x", nmisc)
	d.Check(cs[2].gate == (nmisc&NMISCGate2 != 0), "counter 2 gate disagrees with port 0x61")
	if err := d.Finish(); err != nil {
		return err
	}
	p.ch, p.nmisc = cs, nmisc
	p.irq0.Set(p.ch[0].out)
	return nil
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*PIT)(nil)
	_ devices.Snapshotter = (*PIT)(nil)
	_ devices.Timer       = (*PIT)(nil)
)
