package vmm

// Declarations of the stubs in vmx_amd64.s. Results of the VMX stubs: 0
// success, 1 VMfailInvalid, 2 VMfailValid (SDM Vol. 3C 31.2).

func vmxon(pa uint64) uint8

func vmxoff() uint8

func vmclear(pa uint64) uint8

func vmptrld(pa uint64) uint8

func vmread(field uint64) (value uint64, res uint8)

func vmwrite(field, value uint64) uint8

//go:noescape
func invept(typ uint64, desc *[2]uint64) uint8

//go:noescape
func vmentry(regs *Regs, launched bool, fpu *fpuSwitch) uint8

// vmexitEntry is HOST_RIP; never called from Go.
func vmexitEntry()

//go:noescape
func sgdt(p *[10]byte)

//go:noescape
func sidt(p *[10]byte)

func segments() (cs, ss, ds, es, fs, gs, tr uint16)

func peek64(addr uintptr) uint64

// xgetbv reads an extended control register (XCR0: ECX 0).
func xgetbv(xcr uint32) uint64
