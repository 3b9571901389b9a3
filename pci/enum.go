package pci

import "fmt"

// maxCaps bounds a capability walk, so a looping list cannot hang it
// (the 192 bytes after the header hold at most 48 dword-aligned entries).
const maxCaps = 48

// Enumerate finds every function reachable from bus 0 through
// PCI-to-PCI bridges, depth first, in address order. It reads the header,
// sizes the BARs (decoding briefly off) and walks the capability list.
func Enumerate(c Config) []Device {
	var out []Device
	seen := map[uint8]bool{}
	scanBus(c, 0, seen, &out)
	return out
}

func scanBus(c Config, bus uint8, seen map[uint8]bool, out *[]Device) {
	if seen[bus] {
		return
	}
	seen[bus] = true
	for dev := uint8(0); dev < 32; dev++ {
		nfn := uint8(1)
		for fn := uint8(0); fn < nfn; fn++ {
			a := Addr{Bus: bus, Dev: dev, Fn: fn}
			vendor := Read16(c, a, VendorID)
			if vendor == 0xFFFF || vendor == 0 {
				continue
			}
			ht := Read8(c, a, HeaderType)
			if fn == 0 && ht&headerMultiFunction != 0 {
				nfn = 8
			}
			d := probe(c, a, vendor, ht)
			*out = append(*out, d)
			if d.Header == headerBridge {
				if sec := Read8(c, a, SecondaryBus); sec != 0 {
					scanBus(c, sec, seen, out)
				}
			}
		}
	}
}

func probe(c Config, a Addr, vendor uint16, ht uint8) Device {
	d := Device{
		Addr:     a,
		Vendor:   vendor,
		Device:   Read16(c, a, DeviceID),
		Class:    Read32(c, a, RevisionID) >> 8,
		Revision: Read8(c, a, RevisionID),
		Header:   ht & headerTypeMask,
		IRQLine:  Read8(c, a, InterruptLine),
		IRQPin:   Read8(c, a, InterruptPin),
	}
	nbars := 0
	switch d.Header {
	case 0:
		nbars = 6
	case headerBridge:
		nbars = 2
	}
	d.BARs = sizeBARs(c, a, nbars)
	d.Caps = walkCaps(c, a)
	return d
}

// sizeBARs decodes BARs 0..n-1: write all ones, read back the size mask,
// restore (PCI 3.0 sec. 6.2.5.1), with I/O and memory decoding off
// meanwhile so the transient address decodes nothing.
func sizeBARs(c Config, a Addr, n int) []BAR {
	cmd := Read16(c, a, Command)
	Write16(c, a, Command, cmd&^(CommandIO|CommandMemory))
	defer Write16(c, a, Command, cmd)
	var bars []BAR
	for i := 0; i < n; i++ {
		off := uint16(BAR0 + 4*i)
		orig := Read32(c, a, off)
		Write32(c, a, off, 0xFFFFFFFF)
		mask := Read32(c, a, off)
		Write32(c, a, off, orig)
		if mask == 0 || mask == 0xFFFFFFFF && orig == 0xFFFFFFFF {
			continue
		}
		b := BAR{Index: i}
		if orig&barIO != 0 {
			b.IO = true
			b.Addr = uint64(orig &^ 3)
			b.Size = uint64(^(mask&^3)+1) & 0xFFFF
			if b.Size == 0 {
				continue
			}
			bars = append(bars, b)
			continue
		}
		b.Prefetch = orig&barPrefetch != 0
		b.Addr = uint64(orig &^ 0xF)
		size := uint64(mask&^0xF) | 0xFFFFFFFF00000000
		if orig&barTypeMask == barType64 && i+1 < n {
			b.Is64 = true
			hoff := off + 4
			horig := Read32(c, a, hoff)
			Write32(c, a, hoff, 0xFFFFFFFF)
			hmask := Read32(c, a, hoff)
			Write32(c, a, hoff, horig)
			b.Addr |= uint64(horig) << 32
			size = uint64(hmask)<<32 | uint64(mask&^0xF)
			i++
		}
		b.Size = ^size + 1
		if size == 0 || b.Size == 0 {
			continue
		}
		bars = append(bars, b)
	}
	return bars
}

// walkCaps follows the capability list (PCI 3.0 sec. 6.7).
func walkCaps(c Config, a Addr) []Capability {
	if Read16(c, a, Status)&StatusCapList == 0 {
		return nil
	}
	var caps []Capability
	ptr := Read8(c, a, CapPointer) &^ 3
	for i := 0; ptr >= 0x40 && i < maxCaps; i++ {
		caps = append(caps, Capability{ID: Read8(c, a, uint16(ptr)), Offset: uint16(ptr)})
		ptr = Read8(c, a, uint16(ptr)+1) &^ 3
	}
	return caps
}

// EnableBusMaster turns on memory and I/O decoding and bus mastering, so
// the device answers at its BARs and may DMA. It returns the new command
// register value.
func EnableBusMaster(c Config, d *Device) uint16 {
	cmd := Read16(c, d.Addr, Command) | CommandMemory | CommandIO | CommandBusMaster
	cmd &^= CommandINTxDisable
	Write16(c, d.Addr, Command, cmd)
	return Read16(c, d.Addr, Command)
}

// Find returns the devices with the given vendor and device IDs.
func Find(devs []Device, vendor, device uint16) []*Device {
	var out []*Device
	for i := range devs {
		if devs[i].Vendor == vendor && devs[i].Device == device {
			out = append(out, &devs[i])
		}
	}
	return out
}

// CheckBAR returns the memory BAR i of d or an error naming what is wrong.
func CheckBAR(d *Device, i int) (BAR, error) {
	b, ok := d.BAR(i)
	if !ok {
		return BAR{}, fmt.Errorf("pci: %v: no BAR %d", d.Addr, i)
	}
	if b.IO || b.Addr == 0 {
		return BAR{}, fmt.Errorf("pci: %v: BAR %d is not an assigned memory BAR (%v)", d.Addr, i, b)
	}
	return b, nil
}
