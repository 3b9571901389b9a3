package virtionet

import (
	"encoding/binary"

	"github.com/doppel-ft/doppel/vmm/devices/pci"
)

// The PCI access capability's driver-written fields (4.1.4.7), as
// offsets from the capability's byte 4: bar, id and padding, offset,
// length, pci_cfg_data.
const (
	pciCfgBarOff    = 0
	pciCfgOffsetOff = 4
	pciCfgLengthOff = 8
	pciCfgDataOff   = 12
	pciCfgLen       = 16
	pciCfgFirst     = 4 // the first of them in the capability
)

// ReadConfig implements pci.Function. The PCI access capability's
// driver-written fields read from the device; a read that covers
// pci_cfg_data first performs the BAR read it names (4.1.4.7.1).
func (d *Device) ReadConfig(offset uint8, size int) uint32 {
	if d.touchesData(offset, size) {
		d.pciCfgAccess(false)
	}
	v := d.cfg.ReadConfig(offset, size)
	for i := 0; i < size; i++ {
		if j, ok := d.pciCfgByte(int(offset) + i); ok {
			v = v&^(0xFF<<(8*i)) | uint32(d.pciCfg[j])<<(8*i)
		}
	}
	return v
}

// WriteConfig implements pci.Function. Setting Bus Master lets the
// device process what the driver posted while it could not.
func (d *Device) WriteConfig(offset uint8, size int, value uint32) {
	before := d.cfg.Command()
	d.cfg.WriteConfig(offset, size, value)
	for i := 0; i < size; i++ {
		if j, ok := d.pciCfgByte(int(offset) + i); ok && j != pciCfgBarOff+1 && j != pciCfgBarOff+2 && j != pciCfgBarOff+3 {
			d.pciCfg[j] = uint8(value >> (8 * i))
		}
	}
	if d.touchesData(offset, size) {
		d.pciCfgAccess(true)
	}
	if before&pci.CommandBusMaster == 0 && d.cfg.Command()&pci.CommandBusMaster != 0 {
		d.kick()
	}
}

// pciCfgByte maps a configuration offset to an index in pciCfg.
func (d *Device) pciCfgByte(o int) (int, bool) {
	j := o - int(d.pciCap) - pciCfgFirst
	return j, j >= 0 && j < pciCfgLen
}

func (d *Device) touchesData(offset uint8, size int) bool {
	lo := int(d.pciCap) + pciCfgFirst + pciCfgDataOff
	return int(offset) < lo+4 && int(offset)+size > lo
}

// pciCfgAccess performs the BAR access the capability names: cap.length
// (1, 2 or 4) bytes at cap.offset of BAR cap.bar, aligned; any other is
// not performed (4.1.4.7.2 lets the device ignore it).
func (d *Device) pciCfgAccess(write bool) {
	le := binary.LittleEndian
	off := uint64(le.Uint32(d.pciCfg[pciCfgOffsetOff:]))
	n := le.Uint32(d.pciCfg[pciCfgLengthOff:])
	if d.pciCfg[pciCfgBarOff] != BAR || (n != 1 && n != 2 && n != 4) || off%uint64(n) != 0 || off+uint64(n) > BARSize {
		return
	}
	data := d.pciCfg[pciCfgDataOff : pciCfgDataOff+n]
	if write {
		d.MMIOWrite(off, data)
	} else {
		d.MMIORead(off, data)
	}
}
