package svm

import (
	"encoding/binary"
	"fmt"
)

// VMCB layout, AMD APM Vol. 2 App. B "Layout of VMCB": table B-1 the
// control area (0x000-0x3FF), table B-2 the state save area (from 0x400).
// The names are the manual's.
const (
	VMCBSize = 4096

	// Control area, table B-1.
	InterceptCR        = 0x000 // u16 reads CR0-15, u16 writes at 0x002
	InterceptDR        = 0x004 // u16 reads, u16 writes
	InterceptException = 0x008 // u32, bit n: exception vector n
	InterceptMisc1     = 0x00C // u32, InterceptIntr...
	InterceptMisc2     = 0x010 // u32, InterceptVMRUN...
	PauseFilterCount   = 0x03E // u16
	IOPMBasePA         = 0x040 // u64, IOPM physical address (4 KiB aligned)
	MSRPMBasePA        = 0x048 // u64
	TSCOffset          = 0x050 // u64
	GuestASID          = 0x058 // u32
	TLBControl         = 0x05C // u8
	VIntr              = 0x060 // u64: V_TPR, V_IRQ, ..., V_INTR_MASKING bit 24
	InterruptShadow    = 0x068 // u64
	VMExitCode         = 0x070 // u64
	ExitInfo1          = 0x078 // u64
	ExitInfo2          = 0x080 // u64
	ExitIntInfo        = 0x088 // u64
	NPEnable           = 0x090 // u64, bit 0 NP_ENABLE
	EventInj           = 0x0A8 // u64
	NCR3               = 0x0B0 // u64, nested page-table root
	LBRVirtEnable      = 0x0B8 // u64
	VMCBClean          = 0x0C0 // u32, clean bits (15.15.3)
	NextRIP            = 0x0C8 // u64, with NRIP save
	GuestInstrBytes    = 0x0D0 // u8 count, then 15 bytes, with decode assists

	// State save area, table B-2. Each segment register is 16 bytes:
	// selector u16, attrib u16, limit u32, base u64.
	SaveES           = 0x400
	SaveCS           = 0x410
	SaveSS           = 0x420
	SaveDS           = 0x430
	SaveFS           = 0x440
	SaveGS           = 0x450
	SaveGDTR         = 0x460
	SaveLDTR         = 0x470
	SaveIDTR         = 0x480
	SaveTR           = 0x490
	SaveCPL          = 0x4CB // u8
	SaveEFER         = 0x4D0
	SaveCR4          = 0x548
	SaveCR3          = 0x550
	SaveCR0          = 0x558
	SaveDR7          = 0x560
	SaveDR6          = 0x568
	SaveRFLAGS       = 0x570
	SaveRIP          = 0x578
	SaveRSP          = 0x5D8
	SaveRAX          = 0x5F8
	SaveSTAR         = 0x600
	SaveLSTAR        = 0x608
	SaveCSTAR        = 0x610
	SaveSFMASK       = 0x618
	SaveKernelGSBase = 0x620
	SaveSysenterCS   = 0x628
	SaveSysenterESP  = 0x630
	SaveSysenterEIP  = 0x638
	SaveCR2          = 0x640
	SaveGPAT         = 0x668
	SaveDBGCTL       = 0x670

	// Offsets inside a segment register's 16 bytes.
	segSelector = 0
	segAttrib   = 2
	segLimit    = 4
	segBase     = 8
)

// Intercept bits of InterceptMisc1 and InterceptMisc2, table B-1.
const (
	InterceptIntr     = 1 << 0 // misc1: physical INTR
	InterceptNMI      = 1 << 1
	InterceptSMI      = 1 << 2
	InterceptINIT     = 1 << 3
	InterceptCPUID    = 1 << 18
	InterceptHLT      = 1 << 24
	InterceptIOIOProt = 1 << 27 // IN/OUT through the IOPM
	InterceptMSRProt  = 1 << 28 // RDMSR/WRMSR through the MSRPM
	InterceptShutdown = 1 << 31

	InterceptVMRUN   = 1 << 0 // misc2: must be set (15.5.1)
	InterceptVMMCALL = 1 << 1
	InterceptVMLOAD  = 1 << 2
	InterceptVMSAVE  = 1 << 3
	InterceptSTGI    = 1 << 4
	InterceptCLGI    = 1 << 5
	InterceptSKINIT  = 1 << 6
	InterceptRDTSCP  = 1 << 7
	InterceptICEBP   = 1 << 8
	InterceptWBINVD  = 1 << 9
	InterceptMONITOR = 1 << 10
	InterceptMWAIT   = 1 << 11
	InterceptXSETBV  = 1 << 13
)

// Other control-area values.
const (
	// TLB_CONTROL values (15.16.1): 0 nothing, 1 flush everything, 3
	// flush this guest's ASID, 7 its non-global entries (the last two
	// only with FlushByAsid).
	TLBControlNone     = 0
	TLBControlFlushAll = 1
	TLBControlFlushASD = 3
	// VIntrMasking (V_INTR_MASKING, bit 24 of VIntr, 15.21.1): the guest's
	// RFLAGS.IF masks only virtual interrupts; physical ones follow the
	// host's IF and exit with InterceptIntr.
	VIntrMasking = 1 << 24
	// NPEnableNP (bit 0 of NPEnable) turns nested paging on (15.25.3).
	NPEnableNP = 1 << 0
	// IOPMSize and MSRPMSize are the permission maps' sizes (15.10.1,
	// 15.11): 12 KiB and 8 KiB, physically contiguous.
	IOPMSize  = 12 << 10
	MSRPMSize = 8 << 10
)

// Segment attributes in the VMCB's compressed form (15.5.1, App. B): the
// descriptor's bits 8-15 and 52-55 as attrib bits 0-7 and 8-11.
const (
	AttrType = 0xF << 0 // segment type
	AttrS    = 1 << 4   // code/data, not system
	AttrDPL  = 3 << 5
	AttrP    = 1 << 7
	AttrAVL  = 1 << 8
	AttrL    = 1 << 9
	AttrDB   = 1 << 10
	AttrG    = 1 << 11

	// Flat 32-bit segments: code execute/read accessed (type 0xB), data
	// read/write accessed (type 3), a busy 32-bit TSS (type 0xB, system).
	AttrCode32 = 0xB | AttrS | AttrP | AttrDB | AttrG
	AttrData32 = 0x3 | AttrS | AttrP | AttrDB | AttrG
	AttrTSS32  = 0xB | AttrP
)

// VMCB is one VMCB page, read and written by offset. On the hardware the
// page lives in doppel's reserved region (never the Go heap); tests use a
// Go array.
type VMCB struct {
	b *[VMCBSize]byte
}

// NewVMCB wraps a 4 KiB page.
func NewVMCB(page *[512]uint64) VMCB {
	return VMCB{b: (*[VMCBSize]byte)(unsafeBytes(page))}
}

func (v VMCB) Get8(off int) uint8          { return v.b[off] }
func (v VMCB) Get16(off int) uint16        { return binary.LittleEndian.Uint16(v.b[off:]) }
func (v VMCB) Get32(off int) uint32        { return binary.LittleEndian.Uint32(v.b[off:]) }
func (v VMCB) Get64(off int) uint64        { return binary.LittleEndian.Uint64(v.b[off:]) }
func (v VMCB) Set8(off int, x uint8)       { v.b[off] = x }
func (v VMCB) Set16(off int, x uint16)     { binary.LittleEndian.PutUint16(v.b[off:], x) }
func (v VMCB) Set32(off int, x uint32)     { binary.LittleEndian.PutUint32(v.b[off:], x) }
func (v VMCB) Set64(off int, x uint64)     { binary.LittleEndian.PutUint64(v.b[off:], x) }
func (v VMCB) Clear()                      { clear(v.b[:]) }
func (v VMCB) Bytes(off, n int) []byte     { return v.b[off : off+n] }
func (v VMCB) SetBits32(off int, m uint32) { v.Set32(off, v.Get32(off)|m) }

// Segment is one segment register of the state save area.
type Segment struct {
	Selector, Attrib uint16
	Limit            uint32
	Base             uint64
}

// SetSegment writes the segment register at off (SaveES ... SaveTR).
func (v VMCB) SetSegment(off int, s Segment) {
	v.Set16(off+segSelector, s.Selector)
	v.Set16(off+segAttrib, s.Attrib)
	v.Set32(off+segLimit, s.Limit)
	v.Set64(off+segBase, s.Base)
}

// Segment reads the segment register at off.
func (v VMCB) Segment(off int) Segment {
	return Segment{v.Get16(off + segSelector), v.Get16(off + segAttrib), v.Get32(off + segLimit), v.Get64(off + segBase)}
}

// GuestConfig is the guest's start state.
type GuestConfig struct {
	NCR3      uint64 // nested page-table root (ept.Tables.NCR3)
	ASID      uint32 // nonzero; 0 is the host's
	IOPM      uint64 // physical address of the 12 KiB IOPM
	MSRPM     uint64 // physical address of the 8 KiB MSRPM
	Entry     uint64 // RIP
	Stack     uint64 // RSP
	HostNXE   bool   // the host runs with EFER.NXE (nested NX bits valid)
	Intercept uint32 // extra InterceptMisc1 bits
}

// SetupGuest fills a zeroed VMCB for the test guest's start state (vmm's
// package doc "Test guest start state"): 32-bit protected mode, paging
// off, flat segments, behind nested paging, every I/O port and MSR
// intercepted, physical interrupts exiting, and every SVM instruction the
// guest might try intercepted. APM Vol. 2 15.5.1 lists the consistency
// checks VMRUN makes (EFER.SVME set, ASID nonzero, the VMRUN intercept).
func (v VMCB) SetupGuest(c GuestConfig) error {
	if c.ASID == 0 {
		return fmt.Errorf("svm: guest ASID 0 is the host's")
	}
	if c.IOPM%4096 != 0 || c.MSRPM%4096 != 0 || c.NCR3%4096 != 0 {
		return fmt.Errorf("svm: IOPM %#x, MSRPM %#x or nCR3 %#x not page aligned", c.IOPM, c.MSRPM, c.NCR3)
	}
	v.Clear()
	v.Set32(InterceptMisc1, InterceptIntr|InterceptNMI|InterceptSMI|InterceptINIT|InterceptCPUID|
		InterceptHLT|InterceptIOIOProt|InterceptMSRProt|InterceptShutdown|c.Intercept)
	v.Set32(InterceptMisc2, InterceptVMRUN|InterceptVMMCALL|InterceptVMLOAD|InterceptVMSAVE|
		InterceptSTGI|InterceptCLGI|InterceptSKINIT|InterceptXSETBV)
	v.Set64(IOPMBasePA, c.IOPM)
	v.Set64(MSRPMBasePA, c.MSRPM)
	v.Set32(GuestASID, c.ASID)
	v.Set8(TLBControl, TLBControlFlushAll)
	v.Set64(VIntr, VIntrMasking)
	v.Set64(NPEnable, NPEnableNP)
	v.Set64(NCR3, c.NCR3)

	code := Segment{Selector: 0x08, Attrib: AttrCode32, Limit: 0xFFFF_FFFF}
	data := Segment{Selector: 0x10, Attrib: AttrData32, Limit: 0xFFFF_FFFF}
	v.SetSegment(SaveCS, code)
	for _, off := range []int{SaveES, SaveSS, SaveDS, SaveFS, SaveGS} {
		v.SetSegment(off, data)
	}
	v.SetSegment(SaveGDTR, Segment{Limit: 0xFFFF})
	v.SetSegment(SaveIDTR, Segment{Limit: 0xFFFF})
	v.SetSegment(SaveLDTR, Segment{Attrib: 0x2 | AttrP, Limit: 0xFFFF})
	v.SetSegment(SaveTR, Segment{Attrib: AttrTSS32, Limit: 0x67})
	v.Set8(SaveCPL, 0)
	v.Set64(SaveEFER, EFER_SVME) // 15.5.1: VMRUN fails with guest EFER.SVME=0
	v.Set64(SaveCR0, CR0_PE|CR0_ET|CR0_NE)
	v.Set64(SaveCR4, 0)
	v.Set64(SaveCR3, 0)
	v.Set64(SaveDR6, 0xFFFF_0FF0)
	v.Set64(SaveDR7, 0x400)
	v.Set64(SaveRFLAGS, 0x2)
	v.Set64(SaveRIP, c.Entry)
	v.Set64(SaveRSP, c.Stack)
	v.Set64(SaveGPAT, DefaultPAT)
	return nil
}

// Guest CR0 bits (AMD APM Vol. 2 3.1.1) and the PAT at reset (7.8.1).
const (
	CR0_PE     = 1 << 0
	CR0_ET     = 1 << 4
	CR0_NE     = 1 << 5
	CR0_PG     = 1 << 31
	DefaultPAT = 0x0007_0406_0007_0406
)
