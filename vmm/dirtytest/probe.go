package dirtytest

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm"
)

func (d *Device) nextProbe() uint32 {
	if d.probeIdx >= len(d.cfg.Probes) {
		d.probeDone = true
		d.probe = 0
		return 0
	}
	d.probe = d.cfg.Probes[d.probeIdx]
	d.probeIdx++
	return uint32(d.probe)
}

func (d *Device) expectFault(gpa uint64) bool { return gpa >= uint64(d.cfg.MemSize) }

// probeLanded: the guest wrote to the probe address without a fault. That
// is right only for an address inside guest RAM, and the value must be in
// the guest's own page (not in a host page of the same address).
func (d *Device) probeLanded() {
	gpa := d.probe
	if d.expectFault(gpa) {
		d.probeFail(fmt.Sprintf("gpa %#x beyond guest RAM was written without an EPT violation", gpa))
		return
	}
	if d.cfg.ReadGuest == nil {
		return
	}
	v, err := d.cfg.ReadGuest(gpa)
	want := uint32(gpa) ^ ProbeMarker
	switch {
	case err != nil:
		d.probeFail(fmt.Sprintf("gpa %#x: %v", gpa, err))
	case v != want:
		d.probeFail(fmt.Sprintf("gpa %#x: guest RAM holds %#x, the guest wrote %#x", gpa, v, want))
	default:
		d.printf("ept-isolation: probe gpa=%#x -> the guest's own RAM, host memory untouched", gpa)
	}
}

func (d *Device) probeFail(msg string) {
	d.probeFails = append(d.probeFails, msg)
	d.printf("ept-isolation: FAIL %s", msg)
}

// EPTViolation is the vCPU's EPT-violation policy while this device runs:
// a violation at the outstanding probe address is logged and the guest
// resumes at its fixup address; any other stops the guest.
func (d *Device) EPTViolation(v *vmm.VCPU, gpa uint64, q vmm.EPTViolationQual) (vmm.Action, error) {
	if d.probing && d.probe != 0 && gpa>>12 == d.probe>>12 && d.fixup != 0 {
		d.violations++
		if !d.expectFault(gpa) {
			d.probeFail(fmt.Sprintf("gpa %#x inside guest RAM faulted (%v)", gpa, q))
		} else {
			d.printf("ept-isolation: probe gpa=%#x -> EPT violation (%v), guest resumed", gpa, q)
		}
		if err := v.VMCS.Write(vmm.GuestRIP, uint64(d.fixup)); err != nil {
			return vmm.ActionStop, fmt.Errorf("dirtytest: resume at fixup: %w", err)
		}
		return vmm.ActionResume, nil
	}
	d.printf("ept-dirty: guest EPT violation at gpa %#x (%v): stopping the guest", gpa, q)
	return vmm.ActionStop, fmt.Errorf("%w: gpa %#x, %v", vmm.ErrEPTViolation, gpa, q)
}

func (d *Device) probeSummary() {
	if len(d.probeFails) == 0 && d.probeDone {
		d.printf("ept-isolation: ok probes=%d violations=%d", len(d.cfg.Probes), d.violations)
		return
	}
	msg := fmt.Sprintf("%d failures, %d of %d probes run", len(d.probeFails), d.probeIdx, len(d.cfg.Probes))
	d.printf("ept-isolation: FAIL %s", msg)
	d.fail(fmt.Errorf("dirtytest: isolation: %s", msg))
}
