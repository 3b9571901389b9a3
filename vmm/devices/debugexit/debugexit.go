// Package debugexit is QEMU's isa-debug-exit device, which test kernels
// written for `qemu -device isa-debug-exit,iobase=0xf4,iosize=4` use to end
// a run with a status: a write of N makes QEMU exit with status N*2+1 (so
// a guest can never fake a clean 0).
//
// Reference: QEMU hw/misc/debugexit.c (debug_exit_write: exit((val << 1) |
// 1)); the device has no registers to read, and this model answers reads
// with all ones, as an unclaimed port does.
//
// # Saved state
//
// The device holds no state; Save writes kind "DBGX" version 1 with an
// empty body, so a machine's snapshot still names every device.
package debugexit

import "github.com/doppel-ft/doppel/vmm/devices"

// Port and Size are where `qemu -kernel` test setups place the device
// (iobase=0xf4, iosize=4). The port is the machine's choice.
const (
	Port = 0xF4
	Size = 4
)

// Device is one debug-exit port. Safe for concurrent use: it has no
// state.
type Device struct {
	exit func(status uint64)
}

// New returns a device calling exit with N*2+1 when the guest writes N.
func New(exit func(status uint64)) *Device { return &Device{exit: exit} }

// Status is the exit status QEMU reports for a write of value.
func Status(value uint32) uint64 { return uint64(value)<<1 | 1 }

// PortIn implements devices.PortDevice: all ones.
func (d *Device) PortIn(offset uint16, size int) uint32 {
	return uint32(1<<(8*size) - 1)
}

// PortOut implements devices.PortDevice: the written value, of any size at
// any offset within the device, ends the run.
func (d *Device) PortOut(offset uint16, size int, value uint32) {
	d.exit(Status(value))
}

const (
	stateMagic   = "DBGX"
	stateVersion = 1
)

// Save implements devices.Snapshotter.
func (d *Device) Save() ([]byte, error) {
	return devices.NewEncoder(stateMagic, stateVersion).Finish(), nil
}

// Restore implements devices.Snapshotter.
func (d *Device) Restore(state []byte) error {
	return devices.NewDecoder(state, stateMagic, stateVersion).Finish()
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*Device)(nil)
	_ devices.Snapshotter = (*Device)(nil)
)
