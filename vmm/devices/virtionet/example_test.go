package virtionet_test

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
)

// The machine's wiring: the function goes on the PCI bus (INTA# to a
// PIRQ line), guest RAM backs its rings, and the MMIO bus sends accesses
// inside BAR 0 to it while the command register enables memory decoding.
func Example() {
	ram := make(virtio.ByteMemory, 1<<20)
	// The output-commit layer: it would queue each frame under its
	// sequence number until the checkpoint holding it is acknowledged.
	tx := virtionet.BackendFunc(func(seq uint64, frame []byte) {})
	nic, err := virtionet.New(ram, tx, virtionet.Options{MAC: [6]byte{0x52, 0x54, 0, 0, 0, 1}})
	if err != nil {
		fmt.Println(err)
		return
	}
	bus := pci.NewBus([4]devices.Line{devices.NoLine, devices.NoLine, devices.NoLine, devices.NoLine})
	if err := bus.Add(3, 0, nic); err != nil {
		fmt.Println(err)
		return
	}
	// Firmware assigns BAR 0 and enables the function.
	nic.WriteConfig(pci.BAR0Offset, 4, 0xFEB00000)
	nic.WriteConfig(pci.CommandOffset, 2, pci.CommandMemory|pci.CommandBusMaster)

	// The MMIO bus glue: an access at gpa reaches the device at an offset
	// from the BAR's current address.
	mmioRead := func(gpa uint64, data []byte) {
		base := nic.Config().BARAddress(virtionet.BAR)
		if nic.Config().Command()&pci.CommandMemory != 0 && gpa >= base && gpa < base+virtionet.BARSize {
			nic.MMIORead(gpa-base, data)
		}
	}
	var q [2]byte
	mmioRead(0xFEB00000+virtionet.CommonOffset+virtio.CommonNumQueues, q[:])
	var mac [6]byte
	mmioRead(0xFEB00000+virtionet.DeviceOffset, mac[:])
	fmt.Printf("BAR 0 at %#x: %d queues, MAC % x\n", nic.Config().BARAddress(virtionet.BAR), q[0], mac)
	// Output:
	// BAR 0 at 0xfeb00000: 2 queues, MAC 52 54 00 00 00 01
}
