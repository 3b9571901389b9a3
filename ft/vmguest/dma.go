package vmguest

import "fmt"

// DMAMemory is guest RAM as device models see it (virtio.GuestMemory):
// every write marks its pages dirty, since a write by host code sets no
// D bit and no PML entry, and a checkpoint that missed it would leave the
// secondary's copy of, say, a virtio used ring stale.
type DMAMemory struct{ v *VM }

// DMA returns the VM's memory for device models.
func (v *VM) DMA() DMAMemory { return DMAMemory{v} }

func (m DMAMemory) check(n int, gpa uint64) error {
	if gpa > uint64(len(m.v.cfg.Memory)) || uint64(n) > uint64(len(m.v.cfg.Memory))-gpa {
		return fmt.Errorf("vmguest: DMA of %d bytes at %#x outside %d bytes of RAM", n, gpa, len(m.v.cfg.Memory))
	}
	return nil
}

// ReadAt copies guest memory at gpa into p.
func (m DMAMemory) ReadAt(p []byte, gpa uint64) error {
	if err := m.check(len(p), gpa); err != nil {
		return err
	}
	copy(p, m.v.cfg.Memory[gpa:])
	return nil
}

// WriteAt copies p into guest memory at gpa and marks the pages dirty
// (after the data, so a harvest that sees the mark has the data).
func (m DMAMemory) WriteAt(p []byte, gpa uint64) error {
	if err := m.check(len(p), gpa); err != nil {
		return err
	}
	copy(m.v.cfg.Memory[gpa:], p)
	m.v.MarkDirty(gpa, len(p))
	return nil
}
