package pci

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
)

const (
	busMagic      = "PCIB"
	busVersion    = 1
	configMagic   = "PCIF"
	configVersion = 1
	maxFnState    = 1 << 20
)

// Save implements devices.Snapshotter (format in the package doc).
func (b *Bus) Save() ([]byte, error) {
	e := devices.NewEncoder(busMagic, busVersion)
	e.U32(b.addr)
	var n uint32
	b.each(func(int, int, Function) { n++ })
	e.U32(n)
	var err error
	b.each(func(dev, fn int, f Function) {
		s, ferr := f.Save()
		if ferr != nil && err == nil {
			err = fmt.Errorf("pci: %02x.%d: %w", dev, fn, ferr)
		}
		e.U8(uint8(dev))
		e.U8(uint8(fn))
		e.Bytes(s)
	})
	if err != nil {
		return nil, err
	}
	return e.Finish(), nil
}

func (b *Bus) each(do func(dev, fn int, f Function)) {
	for dev := range b.fns {
		for fn, f := range b.fns[dev] {
			if f != nil {
				do(dev, fn, f)
			}
		}
	}
}

// Restore implements devices.Snapshotter. The blob must list the same
// functions; if a function refuses its state, those restored before it
// are put back, so a refused blob changes nothing.
func (b *Bus) Restore(state []byte) error {
	d := devices.NewDecoder(state, busMagic, busVersion)
	addr := d.U32()
	n := d.U32()
	type item struct {
		f          Function
		blob, prev []byte
	}
	var items []item
	b.each(func(dev, fn int, f Function) {
		if d.Err() != nil {
			return
		}
		gd, gf := d.U8(), d.U8()
		d.Check(int(gd) == dev && int(gf) == fn, "function %02x.%d where %02x.%d is", gd, gf, dev, fn)
		items = append(items, item{f: f, blob: d.Bytes(maxFnState)})
	})
	d.Check(int(n) == len(items), "%d functions, the bus has %d", n, len(items))
	d.Check(addr&^addrMask == 0, "CONFIG_ADDRESS %#x", addr)
	if err := d.Finish(); err != nil {
		return err
	}
	for i := range items {
		prev, err := items[i].f.Save()
		if err != nil {
			return fmt.Errorf("%w: saving for rollback: %v", devices.ErrBadState, err)
		}
		items[i].prev = prev
	}
	for i, it := range items {
		if err := it.f.Restore(it.blob); err != nil {
			for _, back := range items[:i] {
				back.f.Restore(back.prev) // its own state: accepted
			}
			return fmt.Errorf("pci: function %d: %w", i, err)
		}
	}
	b.addr = addr
	return nil
}

// Save implements devices.Snapshotter (format in the package doc).
func (c *Config) Save() ([]byte, error) {
	e := devices.NewEncoder(configMagic, configVersion)
	e.Bytes(c.space[:])
	e.Bool(c.level)
	return e.Finish(), nil
}

// Restore implements devices.Snapshotter and drives INTx to the restored
// level.
func (c *Config) Restore(state []byte) error {
	d := devices.NewDecoder(state, configMagic, configVersion)
	space := d.Bytes(ConfigBytes)
	level := d.Bool()
	d.Check(len(space) == ConfigBytes, "%d config bytes", len(space))
	if d.Err() == nil {
		for i := range space {
			ro := ^c.wmask[i]
			if i == StatusOffset {
				ro &^= StatusInterrupt
			}
			if (space[i]^c.space[i])&ro != 0 {
				d.Check(false, "read-only config byte %#x is %#x, the device has %#x", i, space[i], c.space[i])
				break
			}
		}
		d.Check((space[StatusOffset]&StatusInterrupt != 0) == level, "status interrupt bit disagrees with INTx")
	}
	if err := d.Finish(); err != nil {
		return err
	}
	copy(c.space[:], space)
	c.level = level
	c.driven = c.level && c.Command()&CommandINTxDisable == 0
	c.intx.Set(c.driven)
	return nil
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*Bus)(nil)
	_ devices.Snapshotter = (*Bus)(nil)
	_ INTxUser            = (*Config)(nil)
)
