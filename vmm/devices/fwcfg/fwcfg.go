// Package fwcfg is QEMU's firmware configuration device (fw_cfg) over its
// legacy x86 I/O port interface, so kernels written for `qemu -kernel` can
// read the CPU count and RAM size the way they do under QEMU.
//
// Reference: QEMU docs/specs/fw_cfg.txt (the "Firmware Configuration
// Interface" spec) and hw/nvram/fw_cfg.c. The selector register is the
// 16-bit port 0x510: writing a key selects an item and rewinds its data
// offset to 0. The data register is the byte port 0x511: each read returns
// the next byte of the selected item, and 0 past its end or for a key
// with no item. Data writes are ignored (as in QEMU since 2.4). As in
// QEMU's combined I/O region (fw_cfg_comb_read/write), the access size
// decides, not the port: any byte read reads data, any 16-bit write
// selects, any byte write is a data write; other sizes are invalid there,
// and here read as all ones without consuming data. The DMA interface is
// not offered: bit 1 of the ID item is clear.
//
// Items: the signature "QEMU" (key 0x0000), the interface ID (0x0001,
// u32 LE, bit 0 set: traditional interface), RAM_SIZE (0x0003, u64 LE),
// NB_CPUS (0x0005, u16 LE), MAX_CPUS (0x000F, u16 LE), and named files
// from key 0x0020 with their directory at FILE_DIR (0x0019): a u32
// big-endian count, then per file a u32 BE size, u16 BE key, u16 reserved
// and a 56-byte NUL-padded name, sorted by name as QEMU sorts them.
//
// # Saved state
//
// The items are the machine's configuration, not state: a device is
// restored into one built with the same items. Save writes kind "FWCF"
// version 1: the selected key (u16) and the data offset (u32, at most the
// item's length).
package fwcfg

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Port is the base of the legacy I/O interface: the selector at Port, the
// data register at Port+1.
const (
	Port = 0x510
	Size = 2
)

// Offsets from Port.
const (
	Selector = 0
	Data     = 1
)

// Item keys (fw_cfg.txt, "Selector Register").
const (
	KeySignature = 0x0000
	KeyID        = 0x0001
	KeyRAMSize   = 0x0003
	KeyNBCPUs    = 0x0005
	KeyMaxCPUs   = 0x000F
	KeyFileDir   = 0x0019
	KeyFileFirst = 0x0020
)

// IDTraditional is bit 0 of the ID item: the port interface is present
// (bit 1, DMA, is clear).
const IDTraditional = 1 << 0

const (
	fileNameLen = 56
	maxFiles    = 0x1000
)

// Device is the fw_cfg device. Not safe for concurrent use.
type Device struct {
	items  map[uint16][]byte
	files  []file
	key    uint16
	offset uint32
}

type file struct {
	name string
	key  uint16
}

// New returns a device for a machine with cpus CPUs and ramSize bytes of
// RAM.
func New(cpus uint16, ramSize uint64) *Device {
	d := &Device{items: map[uint16][]byte{}}
	d.items[KeySignature] = []byte("QEMU")
	d.items[KeyID] = binary.LittleEndian.AppendUint32(nil, IDTraditional)
	d.items[KeyRAMSize] = binary.LittleEndian.AppendUint64(nil, ramSize)
	d.items[KeyNBCPUs] = binary.LittleEndian.AppendUint16(nil, cpus)
	d.items[KeyMaxCPUs] = binary.LittleEndian.AppendUint16(nil, cpus)
	d.items[KeyFileDir] = d.directory()
	return d
}

// AddFile adds a named file item (such as "etc/e820") and returns its key.
// It is part of building the machine, before the guest runs.
func (d *Device) AddFile(name string, data []byte) (uint16, error) {
	if len(name) == 0 || len(name) >= fileNameLen {
		return 0, fmt.Errorf("fwcfg: file name %q: must be 1 to %d bytes", name, fileNameLen-1)
	}
	if len(d.files) >= maxFiles {
		return 0, fmt.Errorf("fwcfg: file %q: all %d file keys used", name, maxFiles)
	}
	for _, f := range d.files {
		if f.name == name {
			return 0, fmt.Errorf("fwcfg: file %q added twice", name)
		}
	}
	key := uint16(KeyFileFirst + len(d.files))
	d.files = append(d.files, file{name, key})
	d.items[key] = append([]byte(nil), data...)
	d.items[KeyFileDir] = d.directory()
	return key, nil
}

func (d *Device) directory() []byte {
	fs := append([]file(nil), d.files...)
	sort.Slice(fs, func(i, j int) bool { return fs[i].name < fs[j].name })
	b := binary.BigEndian.AppendUint32(nil, uint32(len(fs)))
	for _, f := range fs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(d.items[f.key])))
		b = binary.BigEndian.AppendUint16(b, f.key)
		b = append(b, 0, 0)
		var name [fileNameLen]byte
		copy(name[:], f.name)
		b = append(b, name[:]...)
	}
	return b
}

func (d *Device) next() byte {
	item := d.items[d.key]
	if int(d.offset) >= len(item) {
		return 0
	}
	b := item[d.offset]
	d.offset++
	return b
}

// PortIn implements devices.PortDevice for a device mapped at Port: a
// byte read returns the next byte of the item.
func (d *Device) PortIn(offset uint16, size int) uint32 {
	if size != 1 {
		return uint32(1<<(8*size) - 1)
	}
	return uint32(d.next())
}

// PortOut implements devices.PortDevice: a 16-bit write selects an item;
// other writes are ignored.
func (d *Device) PortOut(offset uint16, size int, value uint32) {
	if size == 2 {
		d.key = uint16(value)
		d.offset = 0
	}
}

const (
	stateMagic   = "FWCF"
	stateVersion = 1
)

// Save implements devices.Snapshotter.
func (d *Device) Save() ([]byte, error) {
	e := devices.NewEncoder(stateMagic, stateVersion)
	e.U16(d.key)
	e.U32(d.offset)
	return e.Finish(), nil
}

// Restore implements devices.Snapshotter.
func (d *Device) Restore(state []byte) error {
	dec := devices.NewDecoder(state, stateMagic, stateVersion)
	key := dec.U16()
	off := dec.U32()
	dec.Check(uint64(off) <= uint64(len(d.items[key])), "offset %d in item %#x of %d bytes", off, key, len(d.items[key]))
	if err := dec.Finish(); err != nil {
		return err
	}
	d.key, d.offset = key, off
	return nil
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*Device)(nil)
	_ devices.Snapshotter = (*Device)(nil)
)
