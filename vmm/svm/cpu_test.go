package svm

import (
	"bytes"
	"testing"

	"github.com/doppel-ft/doppel/vmm"
)

func TestCPUSaveRestore(t *testing.T) {
	var p1, p2 [512]uint64
	a := &CPU{HW: &HWVCPU{}, V: &VCPU{VMCB: NewVMCB(&p1)}}
	if err := a.V.VMCB.SetupGuest(GuestConfig{NCR3: 0x1000, ASID: 1, Entry: 0x100000, Stack: 0xFF000}); err != nil {
		t.Fatal(err)
	}
	a.V.VMCB.Set64(SaveCR2, 0xDEAD_B000)
	a.V.VMCB.SetSegment(SaveFS, Segment{Selector: 0x23, Attrib: AttrData32, Limit: 0xFFF, Base: 0x7000_0000})
	a.V.Regs = vmm.Regs{RAX: 1, RBX: 2, RCX: 3, R15: 15}
	blob, err := a.Save()
	if err != nil {
		t.Fatal(err)
	}
	b := &CPU{HW: &HWVCPU{}, V: &VCPU{VMCB: NewVMCB(&p2)}}
	b.V.VMCB.Set64(SaveRIP, 0x55) // overwritten by Restore
	if err := b.Restore(blob); err != nil {
		t.Fatal(err)
	}
	// The state-save area must now match, control area aside.
	if !bytes.Equal(a.V.VMCB.Bytes(0x400, 0x300), b.V.VMCB.Bytes(0x400, 0x300)) || b.V.Regs != a.V.Regs || !b.HW.flush {
		t.Errorf("restored state differs: rip %#x regs %+v flush %v", b.V.VMCB.Get64(SaveRIP), b.V.Regs, b.HW.flush)
	}
	// A damaged blob changes nothing.
	c := &CPU{HW: &HWVCPU{}, V: &VCPU{VMCB: NewVMCB(&[512]uint64{})}}
	c.V.VMCB.Set64(SaveRIP, 0x77)
	for _, bad := range [][]byte{blob[:len(blob)-3], append([]byte("XXXX"), blob[4:]...), nil} {
		if err := c.Restore(bad); err == nil || c.V.VMCB.Get64(SaveRIP) != 0x77 {
			t.Errorf("bad blob of %d bytes: %v, rip %#x", len(bad), err, c.V.VMCB.Get64(SaveRIP))
		}
	}
}
