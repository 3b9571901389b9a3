package virtionet

import (
	"fmt"

	"github.com/doppel-ft/doppel/nic/mmio"
	"github.com/doppel-ft/doppel/pci"
)

// Transport is the device's four register windows (4.1.4): the common
// configuration, the notification area with its multiplier, the ISR
// status byte and the network device's configuration.
type Transport struct {
	Common, Notify, ISR, Device mmio.Space
	NotifyMultiplier            uint32
}

// Match reports whether d is a modern virtio network device.
func Match(d *pci.Device) bool {
	return d.Vendor == VendorVirtio && d.Device == DeviceNetModern
}

// capability is struct virtio_pci_cap (4.1.4).
type capability struct {
	typ, bar     uint8
	offset, size uint32
	mult         uint32 // notify capability only
}

// PCITransport finds the virtio capabilities of d and maps their BARs
// with mapBAR (which returns the whole BAR).
func PCITransport(cfg pci.Config, d *pci.Device, mapBAR func(bar int) (mmio.Mem, error)) (Transport, error) {
	caps := map[uint8]capability{}
	for _, off := range d.CapsOf(pciCapVendor) {
		c := capability{
			typ:    pci.Read8(cfg, d.Addr, off+3),
			bar:    pci.Read8(cfg, d.Addr, off+4),
			offset: pci.Read32(cfg, d.Addr, off+8),
			size:   pci.Read32(cfg, d.Addr, off+12),
		}
		if c.typ == CapNotifyCfg {
			c.mult = pci.Read32(cfg, d.Addr, off+16)
		}
		if _, seen := caps[c.typ]; !seen && c.bar < 6 { // the first of each type is preferred (4.1.4.1)
			caps[c.typ] = c
		}
	}
	bars := map[uint8]mmio.Mem{}
	window := func(typ uint8, name string, min uint32) (mmio.Mem, error) {
		c, ok := caps[typ]
		if !ok {
			return nil, fmt.Errorf("virtio-net: %v: no %s capability (a legacy-only device?)", d.Addr, name)
		}
		if c.size < min {
			return nil, fmt.Errorf("virtio-net: %v: %s window of %d bytes", d.Addr, name, c.size)
		}
		m, ok := bars[c.bar]
		if !ok {
			var err error
			if m, err = mapBAR(int(c.bar)); err != nil {
				return nil, err
			}
			bars[c.bar] = m
		}
		if uint64(c.offset)+uint64(c.size) > uint64(len(m)) {
			return nil, fmt.Errorf("virtio-net: %v: %s window %#x+%#x beyond BAR %d", d.Addr, name, c.offset, c.size, c.bar)
		}
		return m[c.offset : c.offset+c.size], nil
	}
	var t Transport
	var err error
	if t.Common, err = window(CapCommonCfg, "common", QueueDevice+8); err != nil {
		return t, err
	}
	if t.Notify, err = window(CapNotifyCfg, "notify", 2); err != nil {
		return t, err
	}
	if t.ISR, err = window(CapISRCfg, "ISR", 1); err != nil {
		return t, err
	}
	if t.Device, err = window(CapDeviceCfg, "device", NetConfigStatus+2); err != nil {
		return t, err
	}
	t.NotifyMultiplier = caps[CapNotifyCfg].mult
	return t, nil
}
