package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/loader"
)

// BootStateFields turns a loader's start state into VMCS guest-state
// fields (SDM Vol. 3C 25.4): CR4 gains VMXE (required in VMX operation,
// hidden by the read shadow), CR0 NE (required, and Linux sets it itself).
func BootStateFields(b *loader.BootState) []fieldValue {
	fv := []fieldValue{
		{GuestCR0, b.CR0 | 1<<5},
		{CR0ReadShadow, b.CR0 | 1<<5},
		{GuestCR3, b.CR3},
		{GuestCR4, b.CR4 | CR4_VMXE},
		{CR4ReadShadow, b.CR4},
		{GuestIA32EFER, b.EFER},
		{GuestRIP, b.RIP}, {GuestRSP, b.RSP}, {GuestRFLAGS, b.RFLAGS | 2},
		{GuestGDTRBase, b.GDTBase}, {GuestGDTRLimit, uint64(b.GDTLimit)},
		{GuestIDTRBase, b.IDTBase}, {GuestIDTRLimit, uint64(b.IDTLimit)},
	}
	fv = append(fv, resetFields()...)
	for _, s := range []struct {
		seg  loader.Segment
		sel  Field
		base Field
		lim  Field
		ar   Field
	}{
		{b.CS, GuestCSSelector, GuestCSBase, GuestCSLimit, GuestCSAccessRights},
		{b.DS, GuestDSSelector, GuestDSBase, GuestDSLimit, GuestDSAccessRights},
		{b.ES, GuestESSelector, GuestESBase, GuestESLimit, GuestESAccessRights},
		{b.SS, GuestSSSelector, GuestSSBase, GuestSSLimit, GuestSSAccessRights},
		{b.FS, GuestFSSelector, GuestFSBase, GuestFSLimit, GuestFSAccessRights},
		{b.GS, GuestGSSelector, GuestGSBase, GuestGSLimit, GuestGSAccessRights},
		{b.TR, GuestTRSelector, GuestTRBase, GuestTRLimit, GuestTRAccessRights},
		{b.LDTR, GuestLDTRSelector, GuestLDTRBase, GuestLDTRLimit, GuestLDTRAccessRights},
	} {
		fv = append(fv, fieldValue{s.sel, uint64(s.seg.Selector)}, fieldValue{s.base, s.seg.Base},
			fieldValue{s.lim, uint64(s.seg.Limit)}, fieldValue{s.ar, uint64(s.seg.Access)})
	}
	return fv
}

// resetFields are the guest-state fields every start state shares.
func resetFields() []fieldValue {
	return []fieldValue{
		{GuestDR7, guestDR7},
		{GuestIA32PAT, guestPAT},
		{GuestIA32Debugctl, 0},
		{GuestIA32SysenterCS, 0}, {GuestIA32SysenterESP, 0}, {GuestIA32SysenterEIP, 0},
		{GuestActivityState, 0},
		{GuestInterruptibilityState, 0},
		{GuestPendingDebugExceptions, 0},
		{VMEntryInterruptionInfo, 0},
	}
}

// RealModeState is the state an application processor starts in after
// SIPI (SDM Vol. 3A 9.1.1 table 9-1, 9.4.4): real mode at CS = sel,
// CS base sel<<4, IP ip; an unrestricted guest runs it directly.
func RealModeState(sel uint16, ip uint64) []fieldValue {
	const (
		arCode16 = 0x9B // present, code, read, accessed
		arData16 = 0x93
		arTSS16  = 0x8B // busy TSS (entry checks, 26.3.1.2)
		arLDT    = 0x82
	)
	fv := []fieldValue{
		{GuestCR0, 0x10 | 1<<5}, {CR0ReadShadow, 0x10},
		{GuestCR3, 0},
		{GuestCR4, CR4_VMXE}, {CR4ReadShadow, 0},
		{GuestIA32EFER, 0},
		{GuestRIP, ip}, {GuestRSP, 0}, {GuestRFLAGS, 2},
		{GuestGDTRBase, 0}, {GuestGDTRLimit, 0xFFFF},
		{GuestIDTRBase, 0}, {GuestIDTRLimit, 0xFFFF},
		{GuestCSSelector, uint64(sel)}, {GuestCSBase, uint64(sel) << 4}, {GuestCSLimit, 0xFFFF}, {GuestCSAccessRights, arCode16},
		{GuestTRSelector, 0}, {GuestTRBase, 0}, {GuestTRLimit, 0xFFFF}, {GuestTRAccessRights, arTSS16},
		{GuestLDTRSelector, 0}, {GuestLDTRBase, 0}, {GuestLDTRLimit, 0xFFFF}, {GuestLDTRAccessRights, arLDT},
	}
	for _, f := range [][4]Field{
		{GuestDSSelector, GuestDSBase, GuestDSLimit, GuestDSAccessRights},
		{GuestESSelector, GuestESBase, GuestESLimit, GuestESAccessRights},
		{GuestSSSelector, GuestSSBase, GuestSSLimit, GuestSSAccessRights},
		{GuestFSSelector, GuestFSBase, GuestFSLimit, GuestFSAccessRights},
		{GuestGSSelector, GuestGSBase, GuestGSLimit, GuestGSAccessRights},
	} {
		fv = append(fv, fieldValue{f[0], 0}, fieldValue{f[1], 0}, fieldValue{f[2], 0xFFFF}, fieldValue{f[3], arData16})
	}
	return append(fv, resetFields()...)
}

// savedFields is every VMCS field a vCPU's architectural state lives in:
// the guest-state area (25.4) with the CR shadows, the IA-32e entry
// control and an event queued for the next entry.
var savedFields = []Field{
	GuestCR0, GuestCR3, GuestCR4, CR0ReadShadow, CR4ReadShadow, GuestDR7,
	GuestRSP, GuestRIP, GuestRFLAGS,
	GuestESSelector, GuestCSSelector, GuestSSSelector, GuestDSSelector, GuestFSSelector, GuestGSSelector, GuestLDTRSelector, GuestTRSelector,
	GuestESBase, GuestCSBase, GuestSSBase, GuestDSBase, GuestFSBase, GuestGSBase, GuestLDTRBase, GuestTRBase,
	GuestESLimit, GuestCSLimit, GuestSSLimit, GuestDSLimit, GuestFSLimit, GuestGSLimit, GuestLDTRLimit, GuestTRLimit,
	GuestESAccessRights, GuestCSAccessRights, GuestSSAccessRights, GuestDSAccessRights, GuestFSAccessRights,
	GuestGSAccessRights, GuestLDTRAccessRights, GuestTRAccessRights,
	GuestGDTRBase, GuestGDTRLimit, GuestIDTRBase, GuestIDTRLimit,
	GuestIA32EFER, GuestIA32PAT, GuestIA32Debugctl,
	GuestIA32SysenterCS, GuestIA32SysenterESP, GuestIA32SysenterEIP,
	GuestActivityState, GuestInterruptibilityState, GuestPendingDebugExceptions,
	GuestPDPTE0, GuestPDPTE1, GuestPDPTE2, GuestPDPTE3,
	VMEntryControls,
	VMEntryInterruptionInfo, VMEntryExceptionErrorCode, VMEntryInstructionLength,
}

// VCPUState is what SaveVCPUState saves besides the VMCS fields.
type VCPUState struct {
	Regs Regs
	// XSave is the guest's x87/SSE/AVX state: a standard-format XSAVE
	// area (xsave.go) of at least XSaveMinSize bytes; its legacy region
	// is the FXSAVE image.
	XSave    []byte
	XCR0     uint64
	MSRArea  *MSRArea
	MSRs     *GuestMSRs
	WaitSIPI bool
	GuestTSC uint64
	// CR2 and DR6 are kept by AMD-V's VMCB (version 2). VT-x's VMCS has
	// neither: CR2 comes from Regs.CR2, which doppel saves at every exit,
	// and DR6 from the CPU's own register (version 4), like DR0-DR3.
	CR2, DR6 uint64
	// DR holds the breakpoint addresses DR0-DR3 (version 4), which
	// neither the VMCS nor the VMCB has: a guest's values stay in the
	// CPU's registers across exits (GuestDebugRegs).
	DR [4]uint64

	// What RestoreVCPUState checks XSave and XCR0 against: the size of
	// the restoring vCPU's area (0: XSaveMinSize, x87/SSE only) and the
	// XCR0 values its guest may hold (0: x87 only).
	XSaveSize   int
	XCR0Allowed uint64
}

// Versions: 2 carried a 512-byte FXSAVE image where 3 carries the XSAVE
// area; 4 adds DR0-DR3 at the end. Older states still restore: a
// version-2 image becomes an area holding x87 and SSE, and a state
// without DR0-DR3 has them zero, as after RESET.
const (
	vcpuStateMagic       = "VCPU"
	vcpuStateVersion     = 4
	vcpuStateVersionNoDR = 3
	vcpuStateVersionFX   = 2
)

// SaveVCPUState encodes a vCPU: the VMCS fields in savedFields order,
// the general registers, the XSAVE area, XCR0, the switched MSRs, the
// software MSRs, whether it waits for SIPI, its TSC, CR2, DR6 and
// DR0-DR3.
func SaveVCPUState(vmcs VMCS, s *VCPUState) ([]byte, error) {
	e := devices.NewEncoder(vcpuStateMagic, vcpuStateVersion)
	e.U32(uint32(len(savedFields)))
	for _, f := range savedFields {
		v, err := vmcs.Read(f)
		if err != nil {
			return nil, fmt.Errorf("vmm: save vcpu: %w", err)
		}
		e.U64(v)
	}
	r := &s.Regs
	for _, v := range []uint64{r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RBP, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15} {
		e.U64(v)
	}
	if len(s.XSave) < XSaveMinSize {
		return nil, fmt.Errorf("vmm: save vcpu: XSAVE area of %d bytes", len(s.XSave))
	}
	e.Bytes(s.XSave)
	e.U64(s.XCR0)
	e.U32(uint32(len(SwitchedMSRs)))
	for _, m := range SwitchedMSRs {
		v, _ := s.MSRArea.Get(m)
		e.U64(v)
	}
	g := s.MSRs
	e.U64(g.APICBase)
	e.U64(g.MTRRDef)
	for _, v := range g.MTRRFixed {
		e.U64(v)
	}
	for _, v := range g.MTRRVar {
		e.U64(v)
	}
	e.U64(g.MiscEnable)
	e.Bool(s.WaitSIPI)
	e.U64(s.GuestTSC)
	e.U64(s.CR2)
	e.U64(s.DR6)
	for _, v := range s.DR {
		e.U64(v)
	}
	return e.Finish(), nil
}

// RestoreVCPUState decodes b into vmcs and s (whose MSRArea and MSRs must
// be set, and XSaveSize and XCR0Allowed if the vCPU switches more than
// x87 and SSE). On a bad blob nothing is changed.
func RestoreVCPUState(vmcs VMCS, b []byte, s *VCPUState) error {
	version := uint16(vcpuStateVersion)
	if len(b) >= 6 {
		if v := binary.LittleEndian.Uint16(b[4:6]); v == vcpuStateVersionFX || v == vcpuStateVersionNoDR {
			version = v
		}
	}
	d := devices.NewDecoder(b, vcpuStateMagic, version)
	n := d.U32()
	d.Check(n == uint32(len(savedFields)), "%d VMCS fields, want %d", n, len(savedFields))
	vals := make([]uint64, 0, len(savedFields))
	for i := 0; i < len(savedFields) && d.Err() == nil; i++ {
		vals = append(vals, d.U64())
	}
	var r Regs
	for _, p := range []*uint64{&r.RAX, &r.RBX, &r.RCX, &r.RDX, &r.RSI, &r.RDI, &r.RBP, &r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15} {
		*p = d.U64()
	}
	var area []byte
	if version == vcpuStateVersionFX {
		fx := d.Bytes(512)
		d.Check(d.Err() != nil || len(fx) == 512, "FXSAVE image of %d bytes", len(fx))
		if d.Err() == nil {
			area = FXArea((*[512]byte)(fx))
		}
	} else {
		area = d.Bytes(xsaveMaxSize)
	}
	size, allowed := max(s.XSaveSize, XSaveMinSize), s.XCR0Allowed|XCR0_X87
	if d.Err() == nil {
		err := CheckXSaveArea(area, size, allowed)
		d.Check(err == nil, "%v", err)
	}
	xcr0 := d.U64()
	d.Check(d.Err() != nil || ValidXCR0(xcr0, allowed), "XCR0 %#x, this vCPU offers %#x", xcr0, allowed)
	n = d.U32()
	d.Check(n == uint32(len(SwitchedMSRs)), "%d switched MSRs, want %d", n, len(SwitchedMSRs))
	msrs := make([]uint64, len(SwitchedMSRs))
	for i := range msrs {
		msrs[i] = d.U64()
	}
	var g GuestMSRs
	g.APICBase = d.U64()
	g.MTRRDef = d.U64()
	for i := range g.MTRRFixed {
		g.MTRRFixed[i] = d.U64()
	}
	for i := range g.MTRRVar {
		g.MTRRVar[i] = d.U64()
	}
	g.MiscEnable = d.U64()
	wait := d.Bool()
	tsc := d.U64()
	cr2, dr6 := d.U64(), d.U64()
	// A 1 in DR6 bits 63:32 is a #GP when loaded (MOV to DR6) and fails
	// VMRUN's checks (AMD APM Vol. 2 15.5.1).
	d.Check(d.Err() != nil || dr6>>32 == 0, "DR6 %#x has bits above 31", dr6)
	var dr [4]uint64
	if version >= vcpuStateVersion {
		for i := range dr {
			dr[i] = d.U64()
		}
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("vmm: restore vcpu: %w", err)
	}
	for i, f := range savedFields {
		if err := vmcs.Write(f, vals[i]); err != nil {
			return fmt.Errorf("vmm: restore vcpu: %w", err)
		}
	}
	s.Regs = r
	s.XSave = area
	s.XCR0 = xcr0
	for i, m := range SwitchedMSRs {
		s.MSRArea.Set(m, msrs[i])
	}
	s.MSRs.APICBase, s.MSRs.MTRRDef, s.MSRs.MTRRFixed, s.MSRs.MTRRVar, s.MSRs.MiscEnable =
		g.APICBase, g.MTRRDef, g.MTRRFixed, g.MTRRVar, g.MiscEnable
	s.WaitSIPI = wait
	s.GuestTSC = tsc
	s.CR2, s.DR6, s.DR = cr2, dr6, dr
	return nil
}

// CR-access exit qualification (SDM Vol. 3C 28.2.1 table 28-3): control
// register in bits 3:0, access type in 5:4 (0 MOV to CR, 1 MOV from CR,
// 2 CLTS, 3 LMSW), general register in 11:8.
const (
	crAccessToCR   = 0
	crAccessFromCR = 1
)

// handleCRAccess handles the CR exits the controls ask for: MOV to and
// from CR8 (the LAPIC's TPR) and a guest setting CR4.VMXE (#GP: nested
// VMX is not offered).
func handleCRAccess(v *VCPU, e *Exit) (Action, error) {
	q := e.Qualification
	cr, typ, gpr := int(q&0xF), int(q>>4&3), int(q>>8&0xF)
	reg := v.Regs.reg(gpr)
	switch {
	case cr == 8 && v.TPR != nil && reg != nil && typ == crAccessToCR:
		v.TPR.SetTPR(uint8(*reg&0xF) << 4)
		return ActionResume, skip(v, e)
	case cr == 8 && v.TPR != nil && reg != nil && typ == crAccessFromCR:
		*reg = uint64(v.TPR.TPR() >> 4)
		return ActionResume, skip(v, e)
	case cr == 4 && typ == crAccessToCR && reg != nil:
		if *reg&CR4_VMXE != 0 {
			return ActionResume, InjectException(v.VMCS, VectorGP, true, 0)
		}
	}
	return ActionStop, fmt.Errorf("%w: CR access, qualification %#x (cr%d type %d gpr %d), rip %#x",
		ErrUnhandledExit, q, cr, typ, gpr, e.RIP)
}
