package vmm

// Field is a VMCS component encoding, SDM Vol. 3C App. B. Bit 0 selects the
// high 32 bits of a 64-bit field, bits 9:1 the index, bits 11:10 the type
// and bits 14:13 the width.
type Field uint32

// Width of a VMCS field, bits 14:13 of its encoding.
type FieldWidth uint8

// Field widths.
const (
	Width16      FieldWidth = 0
	Width64      FieldWidth = 1
	Width32      FieldWidth = 2
	WidthNatural FieldWidth = 3
)

// FieldType of a VMCS field, bits 11:10 of its encoding.
type FieldType uint8

// Field types.
const (
	TypeControl  FieldType = 0
	TypeReadOnly FieldType = 1 // VM-exit information
	TypeGuest    FieldType = 2
	TypeHost     FieldType = 3
)

// Width returns the field's width.
func (f Field) Width() FieldWidth { return FieldWidth(f >> 13 & 3) }

// Type returns the field's type.
func (f Field) Type() FieldType { return FieldType(f >> 10 & 3) }

// 16-bit fields, App. B.1.
const (
	VirtualProcessorID    Field = 0x0000
	PostedInterruptNotify Field = 0x0002
	EPTPIndex             Field = 0x0004
	GuestESSelector       Field = 0x0800
	GuestCSSelector       Field = 0x0802
	GuestSSSelector       Field = 0x0804
	GuestDSSelector       Field = 0x0806
	GuestFSSelector       Field = 0x0808
	GuestGSSelector       Field = 0x080A
	GuestLDTRSelector     Field = 0x080C
	GuestTRSelector       Field = 0x080E
	GuestInterruptStatus  Field = 0x0810
	PMLIndex              Field = 0x0812
	HostESSelector        Field = 0x0C00
	HostCSSelector        Field = 0x0C02
	HostSSSelector        Field = 0x0C04
	HostDSSelector        Field = 0x0C06
	HostFSSelector        Field = 0x0C08
	HostGSSelector        Field = 0x0C0A
	HostTRSelector        Field = 0x0C0C
)

// 64-bit fields, App. B.2 (full encodings; +1 is the high half).
const (
	IOBitmapAAddress          Field = 0x2000
	IOBitmapBAddress          Field = 0x2002
	MSRBitmapAddress          Field = 0x2004
	VMExitMSRStoreAddress     Field = 0x2006
	VMExitMSRLoadAddress      Field = 0x2008
	VMEntryMSRLoadAddress     Field = 0x200A
	ExecutiveVMCSPointer      Field = 0x200C
	PMLAddress                Field = 0x200E
	TSCOffset                 Field = 0x2010
	VirtualAPICAddress        Field = 0x2012
	APICAccessAddress         Field = 0x2014
	PostedInterruptDescriptor Field = 0x2016
	VMFunctionControls        Field = 0x2018
	EPTPointer                Field = 0x201A
	EPTPListAddress           Field = 0x2024
	XSSExitingBitmap          Field = 0x202C
	TSCMultiplier             Field = 0x2032
	TertiaryProcControls      Field = 0x2034
	GuestPhysicalAddress      Field = 0x2400
	VMCSLinkPointer           Field = 0x2800
	GuestIA32Debugctl         Field = 0x2802
	GuestIA32PAT              Field = 0x2804
	GuestIA32EFER             Field = 0x2806
	GuestIA32PerfGlobalCtrl   Field = 0x2808
	GuestPDPTE0               Field = 0x280A
	GuestPDPTE1               Field = 0x280C
	GuestPDPTE2               Field = 0x280E
	GuestPDPTE3               Field = 0x2810
	HostIA32PAT               Field = 0x2C00
	HostIA32EFER              Field = 0x2C02
	HostIA32PerfGlobalCtrl    Field = 0x2C04
)

// 32-bit fields, App. B.3.
const (
	PinBasedControls            Field = 0x4000
	ProcBasedControls           Field = 0x4002
	ExceptionBitmap             Field = 0x4004
	PageFaultErrorCodeMask      Field = 0x4006
	PageFaultErrorCodeMatch     Field = 0x4008
	CR3TargetCount              Field = 0x400A
	VMExitControls              Field = 0x400C
	VMExitMSRStoreCount         Field = 0x400E
	VMExitMSRLoadCount          Field = 0x4010
	VMEntryControls             Field = 0x4012
	VMEntryMSRLoadCount         Field = 0x4014
	VMEntryInterruptionInfo     Field = 0x4016
	VMEntryExceptionErrorCode   Field = 0x4018
	VMEntryInstructionLength    Field = 0x401A
	TPRThreshold                Field = 0x401C
	SecondaryProcBasedControls  Field = 0x401E
	PLEGap                      Field = 0x4020
	PLEWindow                   Field = 0x4022
	VMInstructionError          Field = 0x4400
	ExitReason                  Field = 0x4402
	VMExitInterruptionInfo      Field = 0x4404
	VMExitInterruptionErrorCode Field = 0x4406
	IDTVectoringInfo            Field = 0x4408
	IDTVectoringErrorCode       Field = 0x440A
	VMExitInstructionLength     Field = 0x440C
	VMExitInstructionInfo       Field = 0x440E
	GuestESLimit                Field = 0x4800
	GuestCSLimit                Field = 0x4802
	GuestSSLimit                Field = 0x4804
	GuestDSLimit                Field = 0x4806
	GuestFSLimit                Field = 0x4808
	GuestGSLimit                Field = 0x480A
	GuestLDTRLimit              Field = 0x480C
	GuestTRLimit                Field = 0x480E
	GuestGDTRLimit              Field = 0x4810
	GuestIDTRLimit              Field = 0x4812
	GuestESAccessRights         Field = 0x4814
	GuestCSAccessRights         Field = 0x4816
	GuestSSAccessRights         Field = 0x4818
	GuestDSAccessRights         Field = 0x481A
	GuestFSAccessRights         Field = 0x481C
	GuestGSAccessRights         Field = 0x481E
	GuestLDTRAccessRights       Field = 0x4820
	GuestTRAccessRights         Field = 0x4822
	GuestInterruptibilityState  Field = 0x4824
	GuestActivityState          Field = 0x4826
	GuestSMBASE                 Field = 0x4828
	GuestIA32SysenterCS         Field = 0x482A
	VMXPreemptionTimerValue     Field = 0x482E
	HostIA32SysenterCS          Field = 0x4C00
)

// Natural-width fields, App. B.4.
const (
	CR0GuestHostMask            Field = 0x6000
	CR4GuestHostMask            Field = 0x6002
	CR0ReadShadow               Field = 0x6004
	CR4ReadShadow               Field = 0x6006
	CR3TargetValue0             Field = 0x6008
	ExitQualification           Field = 0x6400
	IORCX                       Field = 0x6402
	IORSI                       Field = 0x6404
	IORDI                       Field = 0x6406
	IORIP                       Field = 0x6408
	GuestLinearAddress          Field = 0x640A
	GuestCR0                    Field = 0x6800
	GuestCR3                    Field = 0x6802
	GuestCR4                    Field = 0x6804
	GuestESBase                 Field = 0x6806
	GuestCSBase                 Field = 0x6808
	GuestSSBase                 Field = 0x680A
	GuestDSBase                 Field = 0x680C
	GuestFSBase                 Field = 0x680E
	GuestGSBase                 Field = 0x6810
	GuestLDTRBase               Field = 0x6812
	GuestTRBase                 Field = 0x6814
	GuestGDTRBase               Field = 0x6816
	GuestIDTRBase               Field = 0x6818
	GuestDR7                    Field = 0x681A
	GuestRSP                    Field = 0x681C
	GuestRIP                    Field = 0x681E
	GuestRFLAGS                 Field = 0x6820
	GuestPendingDebugExceptions Field = 0x6822
	GuestIA32SysenterESP        Field = 0x6824
	GuestIA32SysenterEIP        Field = 0x6826
	HostCR0                     Field = 0x6C00
	HostCR3                     Field = 0x6C02
	HostCR4                     Field = 0x6C04
	HostFSBase                  Field = 0x6C06
	HostGSBase                  Field = 0x6C08
	HostTRBase                  Field = 0x6C0A
	HostGDTRBase                Field = 0x6C0C
	HostIDTRBase                Field = 0x6C0E
	HostIA32SysenterESP         Field = 0x6C10
	HostIA32SysenterEIP         Field = 0x6C12
	HostRSP                     Field = 0x6C14
	HostRIP                     Field = 0x6C16
)
