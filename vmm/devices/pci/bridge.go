package pci

// Host bridge identity: Intel 82441FX PMC (440FX), as QEMU's "pc" machine.
const (
	VendorIntel     = 0x8086
	DeviceI440FX    = 0x1237
	revisionI440FX  = 0x02
	ClassHostBridge = 0x060000
)

// NewHostBridge returns the configuration space of the host bridge at
// 00:00.0: no BARs, no interrupt.
func NewHostBridge() *Config {
	c, err := NewConfig(Header{
		VendorID: VendorIntel,
		DeviceID: DeviceI440FX,
		Revision: revisionI440FX,
		Class:    ClassHostBridge,
	})
	if err != nil {
		panic(err) // a constant header
	}
	return c
}
