package acpi

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Sleep is the port device of the FADT's sleep control register (offset
// 0) and sleep status register (offset 1), ACPI 6.5 §4.8.3.7-8. A write of
// SLP_EN with SLP_TYP = S5SleepType to the control register calls
// PowerOff: that is Linux's poweroff on a HW-reduced machine. Other sleep
// types are not offered (the DSDT has only \_S5); a request for one sets
// WAK_STS at once, so the guest's wait for wake-up ends instead of
// spinning. WAK_STS is cleared by writing 1 to it.
//
// Save/Restore (magic "ACPS", version 1): control u8 (SLP_TYP bits of
// the last control write), status u8 (WAK_STS).
type Sleep struct {
	powerOff func()
	control  uint8
	status   uint8
}

// NewSleep returns the device; powerOff is called on an S5 request (the
// machine stops the guest; the call may return).
func NewSleep(powerOff func()) *Sleep { return &Sleep{powerOff: powerOff} }

// PortIn reads the registers; wider accesses read consecutive ones.
func (s *Sleep) PortIn(offset uint16, size int) uint32 {
	var v uint32
	for i := 0; i < size; i++ {
		var b uint8
		switch offset + uint16(i) {
		case 0:
			b = s.control // SLP_EN reads as 0
		case 1:
			b = s.status
		}
		v |= uint32(b) << (8 * i)
	}
	return v
}

// PortOut writes the registers; wider accesses write consecutive ones.
func (s *Sleep) PortOut(offset uint16, size int, value uint32) {
	for i := 0; i < size; i++ {
		b := uint8(value >> (8 * i))
		switch offset + uint16(i) {
		case 0:
			s.writeControl(b)
		case 1:
			s.status &^= b & WakeStatus
		}
	}
}

func (s *Sleep) writeControl(b uint8) {
	s.control = b & SleepTypeMask
	if b&SleepEnable == 0 {
		return
	}
	if (b&SleepTypeMask)>>SleepTypeShift == S5SleepType {
		if s.powerOff != nil {
			s.powerOff()
		}
		return
	}
	s.status |= WakeStatus
}

const (
	sleepMagic   = "ACPS"
	sleepVersion = 1
)

// Save returns the device state.
func (s *Sleep) Save() ([]byte, error) {
	e := devices.NewEncoder(sleepMagic, sleepVersion)
	e.U8(s.control)
	e.U8(s.status)
	return e.Finish(), nil
}

// Restore puts back a state from Save; a bad blob changes nothing.
func (s *Sleep) Restore(state []byte) error {
	d := devices.NewDecoder(state, sleepMagic, sleepVersion)
	control, status := d.U8(), d.U8()
	d.Check(control&^SleepTypeMask == 0, "acpi: sleep control %#x", control)
	d.Check(status&^WakeStatus == 0, "acpi: sleep status %#x", status)
	if err := d.Finish(); err != nil {
		return fmt.Errorf("acpi: sleep restore: %w", err)
	}
	s.control, s.status = control, status
	return nil
}
