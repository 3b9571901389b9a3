// Package reset is the reset control register at I/O port 0xCF9 of PC
// chipsets, which Linux (reboot=pci, and its fallback chain) and firmware
// use to reset the machine.
//
// Reference: Intel 7 Series / C216 Chipset Family PCH datasheet (326776),
// the processor interface registers, "RST_CNT — Reset Control Register"
// (I/O port CF9h; the same register since the ICH datasheets): bit 1
// SYS_RST selects a hard reset (PLTRST#, platform) over a soft one (INIT#,
// processor only), bit 2 RST_CPU starts the selected reset on its 0→1
// transition, bit 3 FULL_RST asks for a full power cycle with a hard reset.
// Other bits are reserved and read 0. A reset returns the register to 0
// in this model (RST_CPU self-clears), so the next 0→1 write resets again.
//
// Port 0xCF9 lies inside the PCI configuration address dword (0xCF8); the
// PCI host bridge of package pci passes byte accesses there to this
// register (PCI Local Bus 3.0, 3.2.2.3.2).
//
// # Saved state
//
// Save writes kind "RCNT" version 1: the register (u8, bits 1 and 3 only).
package reset

import "github.com/doppel-ft/doppel/vmm/devices"

// Port is the register's I/O port.
const Port = 0xCF9

// RST_CNT bits.
const (
	SysRst  = 1 << 1 // SYS_RST: hard (1) or soft (0) reset
	RstCPU  = 1 << 2 // RST_CPU: 0→1 starts the reset
	FullRst = 1 << 3 // FULL_RST: power-cycle on a hard reset
	mask    = SysRst | FullRst
)

// Kind is the reset the guest asked for.
type Kind int

// Kinds of reset.
const (
	Soft Kind = iota // INIT# to the processors only
	Hard             // platform reset
	Full             // platform reset with a power cycle
)

func (k Kind) String() string {
	return [...]string{"soft", "hard", "full"}[k]
}

// Control is the reset control register. Not safe for concurrent use.
type Control struct {
	reg   uint8
	reset func(Kind)
}

// New returns the register calling reset when the guest resets the
// machine.
func New(reset func(Kind)) *Control { return &Control{reset: reset} }

// PortIn implements devices.PortDevice for a device mapped at Port, one
// byte wide.
func (c *Control) PortIn(offset uint16, size int) uint32 { return uint32(c.reg) }

// PortOut implements devices.PortDevice.
func (c *Control) PortOut(offset uint16, size int, value uint32) {
	v := uint8(value)
	if v&RstCPU == 0 {
		c.reg = v & mask
		return
	}
	// RST_CPU was 0 (it self-clears), so this write is its rising edge.
	k := Soft
	switch {
	case v&SysRst != 0 && v&FullRst != 0:
		k = Full
	case v&SysRst != 0:
		k = Hard
	}
	c.reg = 0
	c.reset(k)
}

const (
	stateMagic   = "RCNT"
	stateVersion = 1
)

// Save implements devices.Snapshotter.
func (c *Control) Save() ([]byte, error) {
	e := devices.NewEncoder(stateMagic, stateVersion)
	e.U8(c.reg)
	return e.Finish(), nil
}

// Restore implements devices.Snapshotter.
func (c *Control) Restore(state []byte) error {
	d := devices.NewDecoder(state, stateMagic, stateVersion)
	v := d.U8()
	d.Check(v&^mask == 0, "RST_CNT %#x", v)
	if err := d.Finish(); err != nil {
		return err
	}
	c.reg = v
	return nil
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*Control)(nil)
	_ devices.Snapshotter = (*Control)(nil)
)
