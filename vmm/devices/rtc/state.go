package rtc

import "github.com/doppel-ft/doppel/vmm/devices"

const (
	stateMagic   = "RTC1"
	stateVersion = 1
)

// Save implements devices.Snapshotter (format in the package doc).
func (r *RTC) Save() ([]byte, error) {
	e := devices.NewEncoder(stateMagic, stateVersion)
	e.U8(r.index)
	e.Bool(r.nmi)
	e.Bytes(r.ram[:])
	e.I64(r.secs)
	e.I64(r.upd)
	e.I64(r.div)
	e.I64(r.seen)
	return e.Finish(), nil
}

// Restore implements devices.Snapshotter and drives IRQ8 to the restored
// level.
func (r *RTC) Restore(state []byte) error {
	d := devices.NewDecoder(state, stateMagic, stateVersion)
	index := d.U8()
	nmi := d.Bool()
	ram := d.Bytes(NumBytes)
	secs, upd, div, seen := d.I64(), d.I64(), d.I64(), d.I64()
	d.Check(index&^indexMask == 0, "index %#x", index)
	d.Check(len(ram) == NumBytes, "%d CMOS bytes", len(ram))
	if d.Err() == nil {
		d.Check(ram[RegA]&AUIP == 0, "register A %#x", ram[RegA])
		d.Check(ram[RegC]&^(CPF|CAF|CUF) == 0, "register C %#x", ram[RegC])
	}
	// Keep time arithmetic far from overflow: a million years either way.
	const lim = 1 << 45
	d.Check(secs > -lim && secs < lim, "time %d", secs)
	for _, v := range []int64{upd, div, seen} {
		d.Check(v > -1<<61 && v < 1<<61, "anchor %d", v)
	}
	if err := d.Finish(); err != nil {
		return err
	}
	r.index, r.nmi = index, nmi
	copy(r.ram[:], ram)
	r.secs, r.upd, r.div, r.seen = secs, upd, div, seen
	r.level = r.irqf()
	r.irq.Set(r.level)
	return nil
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*RTC)(nil)
	_ devices.Snapshotter = (*RTC)(nil)
	_ devices.Timer       = (*RTC)(nil)
)
