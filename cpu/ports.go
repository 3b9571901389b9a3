package cpu

// Ports is access to the x86 I/O address space (SDM Vol. 1, chapter 19).
// Device drivers take a Ports so that tests can back them with a PortFake;
// the kernel passes Hardware.
type Ports interface {
	In8(port uint16) uint8
	Out8(port uint16, value uint8)
	In16(port uint16) uint16
	Out16(port uint16, value uint16)
	In32(port uint16) uint32
	Out32(port uint16, value uint32)
}

// Hardware executes real IN and OUT instructions. It works only in ring 0
// (under the boot layer); on a Linux host every access faults.
var Hardware Ports = hardwarePorts{}

type hardwarePorts struct{}

func (hardwarePorts) In8(port uint16) uint8           { return inb(port) }
func (hardwarePorts) Out8(port uint16, value uint8)   { outb(port, value) }
func (hardwarePorts) In16(port uint16) uint16         { return inw(port) }
func (hardwarePorts) Out16(port uint16, value uint16) { outw(port, value) }
func (hardwarePorts) In32(port uint16) uint32         { return inl(port) }
func (hardwarePorts) Out32(port uint16, value uint32) { outl(port, value) }
