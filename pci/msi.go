package pci

import (
	"errors"
	"fmt"
)

// Message is an MSI or MSI-X message: the device writes Data to Addr.
type Message struct {
	Addr uint64
	Data uint32
}

// LAPICMessage is the message that delivers vector to the local APIC
// apicID: physical destination, fixed delivery, edge (SDM Vol. 3A sec.
// 10.11.1 message address: 0xFEE, destination ID in bits 19:12; 10.11.2
// message data: vector in bits 7:0, delivery mode 000 fixed, trigger 0
// edge).
func LAPICMessage(apicID uint32, vector uint8) Message {
	return Message{Addr: 0xFEE00000 | uint64(apicID&0xFF)<<12, Data: uint32(vector)}
}

// MSI capability layout (PCI 3.0 sec. 6.8.1).
const (
	msiControl      = 2
	msiAddr         = 4
	msiControlEn    = 1 << 0
	msiControlMME   = 7 << 4 // multiple message enable: 000 = one vector
	msiControl64    = 1 << 7
	msixControl     = 2
	msixTable       = 4
	msixControlEn   = 1 << 15
	msixControlMask = 1 << 14 // function mask
	msixEntrySize   = 16
	msixVectorMask  = 1 << 0 // vector control: masked
)

// ErrNoMSI: the device has no MSI (or MSI-X) capability.
var ErrNoMSI = errors.New("pci: no MSI capability")

// EnableMSI programs the device's MSI capability with one message and
// enables it; INTx is disabled (a function uses one or the other).
func EnableMSI(c Config, d *Device, m Message) error {
	off, ok := d.Cap(CapMSI)
	if !ok {
		return fmt.Errorf("%v: %w", d.Addr, ErrNoMSI)
	}
	ctl := Read16(c, d.Addr, off+msiControl)
	Write32(c, d.Addr, off+msiAddr, uint32(m.Addr))
	data := off + 8
	if ctl&msiControl64 != 0 {
		Write32(c, d.Addr, off+msiAddr+4, uint32(m.Addr>>32))
		data = off + 12
	} else if m.Addr>>32 != 0 {
		return fmt.Errorf("pci: %v: 32-bit MSI cannot reach %#x", d.Addr, m.Addr)
	}
	Write16(c, d.Addr, data, uint16(m.Data))
	Write16(c, d.Addr, off+msiControl, ctl&^msiControlMME|msiControlEn)
	Write16(c, d.Addr, Command, Read16(c, d.Addr, Command)|CommandINTxDisable)
	return nil
}

// MSIX is a device's MSI-X capability (PCI 3.0 sec. 6.8.2): the vector
// table lives in a memory BAR.
type MSIX struct {
	Cap         uint16 // capability offset
	TableSize   int    // entries
	TableBAR    int
	TableOffset uint32
}

// ReadMSIX decodes the MSI-X capability of d.
func ReadMSIX(c Config, d *Device) (MSIX, error) {
	off, ok := d.Cap(CapMSIX)
	if !ok {
		return MSIX{}, fmt.Errorf("%v: %w", d.Addr, ErrNoMSI)
	}
	ctl := Read16(c, d.Addr, off+msixControl)
	t := Read32(c, d.Addr, off+msixTable)
	return MSIX{Cap: off, TableSize: int(ctl&0x7FF) + 1, TableBAR: int(t & 7), TableOffset: t &^ 7}, nil
}

// Writer32 is the register access EnableMSIX needs (a mapped BAR).
type Writer32 interface {
	Write32(off uint32, v uint32)
}

// EnableMSIX writes msgs into the first table entries (bar is the
// mapping of the table's BAR), unmasks them and enables MSI-X with the
// function unmasked; INTx is disabled.
func EnableMSIX(c Config, d *Device, x MSIX, bar Writer32, msgs []Message) error {
	if len(msgs) > x.TableSize {
		return fmt.Errorf("pci: %v: %d MSI-X messages for a %d-entry table", d.Addr, len(msgs), x.TableSize)
	}
	ctl := Read16(c, d.Addr, x.Cap+msixControl)
	// Enabled with the function masked while the table is written.
	Write16(c, d.Addr, x.Cap+msixControl, ctl|msixControlEn|msixControlMask)
	for i, m := range msgs {
		e := x.TableOffset + uint32(i*msixEntrySize)
		bar.Write32(e+12, msixVectorMask)
		bar.Write32(e, uint32(m.Addr))
		bar.Write32(e+4, uint32(m.Addr>>32))
		bar.Write32(e+8, m.Data)
		bar.Write32(e+12, 0)
	}
	Write16(c, d.Addr, x.Cap+msixControl, (ctl|msixControlEn)&^msixControlMask)
	Write16(c, d.Addr, Command, Read16(c, d.Addr, Command)|CommandINTxDisable)
	return nil
}
