package uart

import "github.com/doppel-ft/doppel/vmm/devices"

const (
	stateMagic   = "UART"
	stateVersion = 1
)

// Save implements devices.Snapshotter (format in the package doc).
func (u *UART) Save() ([]byte, error) {
	e := devices.NewEncoder(stateMagic, stateVersion)
	for _, b := range []byte{u.dll, u.dlm, u.ier, u.lcr, u.mcr, u.scr, u.fcr} {
		e.U8(b)
	}
	e.Bool(u.overrun)
	e.U8(u.msr)
	e.Bool(u.thri)
	e.U8(u.lastRx)
	e.Bytes(u.rx)
	e.U64(u.Overruns)
	return e.Finish(), nil
}

// Restore implements devices.Snapshotter and drives the interrupt output
// to the restored level.
func (u *UART) Restore(state []byte) error {
	d := devices.NewDecoder(state, stateMagic, stateVersion)
	var r [7]byte
	for i := range r {
		r[i] = d.U8()
	}
	overrun := d.Bool()
	msr := d.U8()
	thri := d.Bool()
	lastRx := d.U8()
	rx := d.Bytes(FIFOSize)
	overruns := d.U64()
	ier, mcr, fcr := r[2], r[4], r[6]
	d.Check(ier&^ierMask == 0, "IER %#x", ier)
	d.Check(mcr&^mcrMask == 0, "MCR %#x", mcr)
	d.Check(fcr&(FCRClearRx|FCRClearTx) == 0 && (fcr == 0 || fcr&FCREnable != 0), "FCR %#x", fcr)
	d.Check(msr&0xF0 == (&UART{mcr: mcr}).modemInputs(), "MSR %#x with MCR %#x", msr, mcr)
	d.Check(fcr&FCREnable != 0 || len(rx) <= 1, "%d bytes received with the FIFO off", len(rx))
	if err := d.Finish(); err != nil {
		return err
	}
	u.dll, u.dlm, u.ier, u.lcr, u.mcr, u.scr, u.fcr = r[0], r[1], ier, r[3], mcr, r[5], fcr
	u.overrun, u.msr, u.thri, u.lastRx = overrun, msr, thri, lastRx
	u.rx = append(u.rx[:0], rx...)
	u.Overruns = overruns
	u.level = u.output()
	u.irq.Set(u.level)
	return nil
}

// The contracts of vmm/devices this device meets.
var (
	_ devices.PortDevice  = (*UART)(nil)
	_ devices.Snapshotter = (*UART)(nil)
)
