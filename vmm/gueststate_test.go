package vmm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/loader"
)

func TestBootStateFields(t *testing.T) {
	b := &loader.BootState{
		Mode: loader.Long64, RIP: 0x100_0200, RSP: 0x8FF0, RFLAGS: 2,
		CR0: loader.CR0PE | loader.CR0ET | loader.CR0PG, CR3: 0x9000, CR4: loader.CR4PAE,
		EFER: loader.EFERLME | loader.EFERLMA, GDTBase: 0x500, GDTLimit: 31,
		CS: loader.Segment{Selector: 0x10, Limit: 0xFFFF_FFFF, Access: 0xA09B},
		TR: loader.Segment{Access: 0x8B, Limit: 0x67},
	}
	vmcs := fakeVMCS{}
	for _, f := range BootStateFields(b) {
		vmcs.Write(f.f, f.v)
	}
	for _, c := range []struct {
		f    Field
		want uint64
	}{
		{GuestRIP, 0x100_0200}, {GuestCR3, 0x9000},
		{GuestCR0, loader.CR0PE | loader.CR0ET | loader.CR0PG | 1<<5},
		{GuestCR4, loader.CR4PAE | CR4_VMXE}, {CR4ReadShadow, loader.CR4PAE},
		{GuestIA32EFER, loader.EFERLME | loader.EFERLMA},
		{GuestCSSelector, 0x10}, {GuestCSAccessRights, 0xA09B}, {GuestCSLimit, 0xFFFF_FFFF},
		{GuestTRAccessRights, 0x8B}, {GuestGDTRLimit, 31}, {GuestIA32PAT, guestPAT},
	} {
		if vmcs[c.f] != c.want {
			t.Errorf("field %#x = %#x, want %#x", uint32(c.f), vmcs[c.f], c.want)
		}
	}
}

func TestRealModeState(t *testing.T) {
	vmcs := fakeVMCS{}
	for _, f := range RealModeState(0x9A00, 0) {
		vmcs.Write(f.f, f.v)
	}
	if vmcs[GuestCSBase] != 0x9_A000 || vmcs[GuestCSSelector] != 0x9A00 || vmcs[GuestRIP] != 0 || vmcs[GuestCR0]&CR0_PE != 0 {
		t.Errorf("CS %#x base %#x rip %#x cr0 %#x", vmcs[GuestCSSelector], vmcs[GuestCSBase], vmcs[GuestRIP], vmcs[GuestCR0])
	}
}

func TestVCPUStateRoundTrip(t *testing.T) {
	src := fakeVMCS{}
	for i, f := range savedFields {
		src[f] = uint64(i)*0x1111 + 7
	}
	var f1, f2 [512]uint64
	a1 := NewMSRArea(&f1, SwitchedMSRs, []uint64{1, 2, 3, 4, 5, 6})
	g1 := NewGuestMSRs(src, a1, true)
	g1.MTRRVar[3], g1.MTRRFixed[10], g1.MTRRDef = 0x55, 0x0606, 0xC06
	s := &VCPUState{Regs: Regs{RAX: 1, R15: 15}, XCR0: 7, MSRArea: a1, MSRs: g1, WaitSIPI: true, GuestTSC: 123456, CR2: 0x7F00_1008, DR6: 0xFFFF_4FF0,
		DR: [4]uint64{0x40_1000, 0, 0x7FFF_EFF8, 0xFFFF_FFFF_8100_0040}}
	s.XSave = NewXSaveArea(832) // x87, SSE, AVX (at 576, 256 bytes)
	s.XSave[0], s.XSave[511], s.XSave[xsaveXStateBV], s.XSave[831] = 0x7F, 0xEE, 7, 0xAB
	blob, err := SaveVCPUState(src, s)
	if err != nil {
		t.Fatal(err)
	}
	dst := fakeVMCS{}
	a2 := NewMSRArea(&f2, SwitchedMSRs, make([]uint64, 6))
	g2 := NewGuestMSRs(dst, a2, false)
	got := &VCPUState{MSRArea: a2, MSRs: g2, XSaveSize: 832, XCR0Allowed: 7}
	if err := RestoreVCPUState(dst, blob, got); err != nil {
		t.Fatal(err)
	}
	for _, f := range savedFields {
		if dst[f] != src[f] {
			t.Errorf("field %#x = %#x, want %#x", uint32(f), dst[f], src[f])
		}
	}
	if got.Regs != s.Regs || !bytes.Equal(got.XSave, s.XSave) || got.XCR0 != 7 || !got.WaitSIPI || got.GuestTSC != 123456 || got.CR2 != s.CR2 || got.DR6 != s.DR6 || got.DR != s.DR {
		t.Errorf("state %+v", got)
	}
	if v, _ := a2.Get(IA32_TSC_AUX); v != 6 {
		t.Errorf("TSC_AUX = %d", v)
	}
	if g2.MTRRVar[3] != 0x55 || g2.MTRRFixed[10] != 0x0606 || g2.MTRRDef != 0xC06 || g2.APICBase != g1.APICBase {
		t.Errorf("MSRs %+v", g2)
	}
	// A DR6 that would #GP when loaded is refused, to a vCPU that takes
	// everything else in the blob.
	badDR6 := append([]byte{}, blob...)
	binary.LittleEndian.PutUint64(badDR6[len(badDR6)-5*8:], 1<<32|0xFFFF_0FF0)
	if err := RestoreVCPUState(fakeVMCS{}, badDR6, &VCPUState{MSRArea: a2, MSRs: g2, XSaveSize: 832, XCR0Allowed: 7}); !errors.Is(err, devices.ErrBadState) || !strings.Contains(err.Error(), "DR6") {
		t.Errorf("DR6 with bit 32 set: %v", err)
	}
	// Truncated or foreign blobs, and AVX state for a vCPU without it,
	// are refused and change nothing.
	for _, bad := range [][]byte{blob[:len(blob)-1], blob[:10], append(append([]byte{}, blob...), 0), blob} {
		before := fakeVMCS{}
		err := RestoreVCPUState(before, bad, &VCPUState{MSRArea: a2, MSRs: g2})
		if !errors.Is(err, devices.ErrBadState) || len(before) != 0 {
			t.Errorf("bad blob of %d bytes: %v, %d fields written", len(bad), err, len(before))
		}
	}
}

// TestVCPUStateVersion2 restores a version-2 state (a 512-byte FXSAVE
// image where version 3 has the XSAVE area): the image becomes the
// area's legacy region with x87 and SSE marked saved.
func TestVCPUStateVersion2(t *testing.T) {
	src := fakeVMCS{}
	var f1, f2 [512]uint64
	a1 := NewMSRArea(&f1, SwitchedMSRs, make([]uint64, len(SwitchedMSRs)))
	s := &VCPUState{XSave: NewXSaveArea(XSaveMinSize), XCR0: XCR0_X87, MSRArea: a1, MSRs: NewGuestMSRs(src, a1, true)}
	s.XSave[100], s.XSave[511] = 0x42, 0x99
	v4, err := SaveVCPUState(src, s)
	if err != nil {
		t.Fatal(err)
	}
	v3 := v4[:len(v4)-4*8] // without DR0-DR3
	// The area follows the header, the VMCS fields and 15 registers as
	// a length-prefixed string: cut its XSAVE header off and relabel.
	at := 10 + 4 + 8*len(savedFields) + 15*8
	if n := binary.LittleEndian.Uint32(v3[at:]); n != XSaveMinSize {
		t.Fatalf("area of %d bytes at %d", n, at)
	}
	v2 := append(append([]byte{}, v3[:at]...), 0, 2, 0, 0)
	v2 = append(v2, v3[at+4:at+4+512]...)
	v2 = append(v2, v3[at+4+XSaveMinSize:]...)
	binary.LittleEndian.PutUint16(v2[4:], 2)
	binary.LittleEndian.PutUint32(v2[6:], uint32(len(v2)-10))
	got := &VCPUState{MSRArea: NewMSRArea(&f2, SwitchedMSRs, make([]uint64, len(SwitchedMSRs))), MSRs: NewGuestMSRs(fakeVMCS{}, a1, false)}
	if err := RestoreVCPUState(fakeVMCS{}, v2, got); err != nil {
		t.Fatal(err)
	}
	want := append([]byte{}, s.XSave...)
	want[xsaveXStateBV] = XCR0_X87 | XCR0_SSE
	if !bytes.Equal(got.XSave, want) || got.XCR0 != XCR0_X87 {
		t.Errorf("area % x, XCR0 %#x", got.XSave[:32], got.XCR0)
	}
	// An unknown version is refused by name.
	v5 := append([]byte{}, v4...)
	v5[4] = 5
	if err := RestoreVCPUState(fakeVMCS{}, v5, got); !errors.Is(err, devices.ErrBadState) {
		t.Errorf("version 5: %v", err)
	}
}

// TestVCPUStateVersion3 restores a version-3 state, which has no DR0-DR3:
// they come back zero, as after RESET.
func TestVCPUStateVersion3(t *testing.T) {
	var f1, f2 [512]uint64
	a1 := NewMSRArea(&f1, SwitchedMSRs, make([]uint64, len(SwitchedMSRs)))
	s := &VCPUState{XSave: NewXSaveArea(XSaveMinSize), XCR0: XCR0_X87, MSRArea: a1, MSRs: NewGuestMSRs(fakeVMCS{}, a1, true),
		CR2: 0x1000, DR6: 0xFFFF_0FF1, DR: [4]uint64{1, 2, 3, 4}}
	v4, err := SaveVCPUState(fakeVMCS{}, s)
	if err != nil {
		t.Fatal(err)
	}
	v3 := append([]byte{}, v4[:len(v4)-4*8]...)
	binary.LittleEndian.PutUint16(v3[4:], 3)
	binary.LittleEndian.PutUint32(v3[6:], uint32(len(v3)-10))
	got := &VCPUState{MSRArea: NewMSRArea(&f2, SwitchedMSRs, make([]uint64, len(SwitchedMSRs))), MSRs: NewGuestMSRs(fakeVMCS{}, a1, false),
		DR: [4]uint64{9, 9, 9, 9}}
	if err := RestoreVCPUState(fakeVMCS{}, v3, got); err != nil {
		t.Fatal(err)
	}
	if got.DR != [4]uint64{} || got.CR2 != 0x1000 || got.DR6 != 0xFFFF_0FF1 {
		t.Errorf("DR0-DR3 %#x, CR2 %#x, DR6 %#x from a version-3 state", got.DR, got.CR2, got.DR6)
	}
	// Version 3 with DR0-DR3 appended is a version-4 body under the
	// wrong label: refused.
	long := append([]byte{}, v4...)
	binary.LittleEndian.PutUint16(long[4:], 3)
	if err := RestoreVCPUState(fakeVMCS{}, long, got); !errors.Is(err, devices.ErrBadState) {
		t.Errorf("version 3 with 32 bytes too many: %v", err)
	}
}

type fakeTPR struct{ v uint8 }

func (f *fakeTPR) TPR() uint8     { return f.v }
func (f *fakeTPR) SetTPR(v uint8) { f.v = v }

func TestCRAccessExits(t *testing.T) {
	v, _ := newTestVCPU(t)
	tpr := &fakeTPR{}
	v.TPR = tpr
	vmcs := v.VMCS.(fakeVMCS)
	// mov cr8, rbx (gpr 3).
	v.Regs.RBX = 0xD
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitCRAccess), Qualification: 8 | 3<<8, InstrLen: 4}); err != nil || tpr.v != 0xD0 {
		t.Errorf("mov cr8: %v, TPR %#x", err, tpr.v)
	}
	// mov r9, cr8 (gpr 9).
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitCRAccess), Qualification: 8 | 1<<4 | 9<<8, InstrLen: 4}); err != nil || v.Regs.R9 != 0xD {
		t.Errorf("read cr8: %v, r9 %#x", err, v.Regs.R9)
	}
	// Setting CR4.VMXE faults.
	v.Regs.RAX = CR4_VMXE | CR4_PAE
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitCRAccess), Qualification: 4}); err != nil ||
		vmcs[VMEntryInterruptionInfo] != VectorGP|IntTypeHWException|IntInfoErrorCode|IntInfoValid {
		t.Errorf("cr4.vmxe: %v, entry info %#x", err, vmcs[VMEntryInterruptionInfo])
	}
	// CR3 loads never exit with these controls: an unhandled error.
	if _, err := Dispatch(v, &Exit{Reason: ExitReasonField(ExitCRAccess), Qualification: 3}); !errors.Is(err, ErrUnhandledExit) {
		t.Errorf("cr3: %v", err)
	}
}
