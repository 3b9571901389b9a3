package vmm

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ept"
)

// This file and vmcs_setup.go, run.go drive the hardware. They build
// everywhere but run only in ring 0 under the boot layer, on a thread
// pinned with PinThread.

// More MSRs the host state needs, SDM Vol. 4 table 2-2.
const (
	IA32_PAT            = 0x277
	IA32_EFER           = 0xC0000080
	IA32_FS_BASE        = 0xC0000100
	IA32_GS_BASE        = 0xC0000101
	IA32_SYSENTER_CS    = 0x174
	IA32_SYSENTER_ESP   = 0x175
	IA32_SYSENTER_EIP   = 0x176
	CR4_VMXE            = 1 << 13
	INVEPTSingleContext = 1
	INVEPTAllContext    = 2
)

// ProbeCaps reads the VMX capabilities of the CPU the thread runs on. It
// executes RDMSR, so it runs only in ring 0 (under the boot layer); CPUID
// decides first whether the VMX MSRs exist at all.
func ProbeCaps() Caps {
	_, _, ecx, _ := cpu.CPUID(1, 0)
	return ReadCaps(ecx&(1<<CPUID01_ECX_VMX) != 0, cpu.RDMSR)
}

// PinThread locks the calling goroutine to its OS thread and that thread to
// CPU n (sched_setaffinity, boot/CONTRACT.md "Hardware from Go"). VMX state
// is per CPU: everything from VMXON to VMXOFF must run there.
func PinThread(n int) error {
	runtime.LockOSThread()
	var mask [16]uint64
	mask[n/64] = 1 << (n % 64)
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
	if e != 0 {
		return fmt.Errorf("vmm: pin to cpu %d: %w", n, e)
	}
	return nil
}

// prDoppelKick is the boot layer's own prctl option: an NMI to the CPU a
// thread runs on (boot/doc.go, sys_kick in boot/layer/signal.c).
const prDoppelKick = 0x4B49434B

// KickThread makes thread tid leave the guest it runs on another CPU at
// once: the boot layer sends that CPU an NMI, which exits the guest
// whatever the guest's RFLAGS.IF (NMI exiting, SDM Vol. 3C 25.2). It
// reports whether an NMI went out (none when the thread is not running on
// another CPU, so not in a guest). Only under the boot layer.
func KickThread(tid int) (bool, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prDoppelKick, uintptr(tid), 0)
	if e != 0 {
		return false, fmt.Errorf("vmm: kick thread %d: %w", tid, e)
	}
	return r == 1, nil
}

// UnpinThread undoes PinThread: the thread may run on every online CPU
// again (boot/CONTRACT.md: sched_getaffinity reports all of them) and the
// goroutine is unlocked from it.
func UnpinThread() error {
	var mask [16]uint64
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
	if e == 0 {
		_, _, e = syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
	}
	runtime.UnlockOSThread()
	if e != 0 {
		return fmt.Errorf("vmm: unpin thread: %w", e)
	}
	return nil
}

// MapPhys maps host-physical [pa, pa+size) through /dev/mem
// (boot/CONTRACT.md). pa and size must be page multiples.
func MapPhys(pa, size uint64) ([]byte, error) {
	fd, err := syscall.Open("/dev/mem", syscall.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("vmm: open /dev/mem: %w", err)
	}
	defer syscall.Close(fd)
	b, err := syscall.Mmap(fd, int64(pa), int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("vmm: mmap /dev/mem [%#x+%#x): %w", pa, size, err)
	}
	return b, nil
}

// vmxError turns a VMX stub result into an error; after VMfailValid it
// reads the VM-instruction error field.
func vmxError(op string, res uint8) error {
	switch res {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("vmm: %s: VMfailInvalid (no current VMCS or not in VMX operation)", op)
	}
	n, r := vmread(uint64(VMInstructionError))
	if r != 0 {
		return fmt.Errorf("vmm: %s: VMfailValid, error field unreadable", op)
	}
	return fmt.Errorf("vmm: %s: %v", op, VMInstructionErrorNumber(n))
}

// HWVMCS is the current VMCS of this CPU, through VMREAD and VMWRITE.
type HWVMCS struct{}

// Read implements VMCS.
func (HWVMCS) Read(f Field) (uint64, error) {
	v, r := vmread(uint64(f))
	if r != 0 {
		return 0, vmxError(fmt.Sprintf("vmread %#x", uint32(f)), r)
	}
	return v, nil
}

// Write implements VMCS. The message is formatted only on failure: Write
// runs at nearly every exit (the guest RIP) and every PML drain.
func (HWVMCS) Write(f Field, v uint64) error {
	if r := vmwrite(uint64(f), v); r != 0 {
		return vmxError(fmt.Sprintf("vmwrite %#x=%#x", uint32(f), v), r)
	}
	return nil
}

// PMLIndex implements ept.PMLIndex.
func (h HWVMCS) PMLIndex() (uint16, error) {
	v, err := h.Read(PMLIndex)
	return uint16(v), err
}

// SetPMLIndex implements ept.PMLIndex.
func (h HWVMCS) SetPMLIndex(i uint16) error { return h.Write(PMLIndex, uint64(i)) }

// DrainPMLLog empties the page-modification log of the vCPU whose VMCS is
// current, on its own CPU (SDM Vol. 3C 29.3.6): drain takes the entries
// logged above index (clearing their pages' D bits, ept.Tables.DrainPML),
// INVEPT drops this CPU's cached translations of eptp, so that a drained
// page's next write is logged again, and the index goes back to the
// start. An empty log costs one VMREAD.
func (h HWVMCS) DrainPMLLog(eptp uint64, drain func(index uint16) error) error {
	idx, err := h.PMLIndex()
	if err != nil {
		return fmt.Errorf("PML index: %w", err)
	}
	if int(idx) == ept.PMLIndexStart {
		return nil
	}
	if err := drain(idx); err != nil {
		return err
	}
	if err := (Invept{}).InvalidateSingleContext(eptp); err != nil {
		return err
	}
	return h.SetPMLIndex(ept.PMLIndexStart)
}

// Invept is the ept.Invalidator of this CPU.
type Invept struct{}

// InvalidateSingleContext implements ept.Invalidator (SDM Vol. 3C 31.3
// INVEPT, type 1).
func (Invept) InvalidateSingleContext(eptp uint64) error {
	desc := [2]uint64{eptp, 0}
	return vmxError("invept", invept(INVEPTSingleContext, &desc))
}

// Frames is where VMX structures come from: zeroed 4 KiB frames outside the
// Go heap (ept.Region.AllocTable) and their mapping.
type Frames interface {
	AllocTable() (uint64, error)
	Table(pa uint64) *[512]uint64
}

// VMX is VMX operation on one CPU.
type VMX struct {
	Caps     Caps
	Features Features
	vmxonPA  uint64
}

// Enable enters VMX operation on this CPU (SDM Vol. 3C 24.7-24.8): checks
// the capabilities, sets IA32_FEATURE_CONTROL if firmware left it unlocked,
// applies the CR0/CR4 fixed bits, sets CR4.VMXE and executes VMXON with a
// VMXON region from frames.
func Enable(caps Caps, frames Frames) (*VMX, error) {
	f := caps.Features()
	if err := f.Usable(); err != nil {
		return nil, err
	}
	if f.Unlocked {
		cpu.WRMSR(IA32_FEATURE_CONTROL, caps.FeatureControl|FeatureControlLock|FeatureControlVMXOutsideSMX)
	}
	cr0 := cpu.ReadCR0()
	if want := (cr0 | caps.CR0Fixed0) & caps.CR0Fixed1; want != cr0 {
		cpu.WriteCR0(want)
	}
	cr4 := cpu.ReadCR4() | CR4_VMXE
	cpu.WriteCR4((cr4 | caps.CR4Fixed0) & caps.CR4Fixed1)
	pa, err := frames.AllocTable()
	if err != nil {
		return nil, fmt.Errorf("vmm: VMXON region: %w", err)
	}
	frames.Table(pa)[0] = uint64(f.Revision)
	if err := vmxError("vmxon", vmxon(pa)); err != nil {
		return nil, err
	}
	return &VMX{Caps: caps, Features: f, vmxonPA: pa}, nil
}

// Disable leaves VMX operation (VMXOFF) and clears CR4.VMXE.
func (x *VMX) Disable() error {
	if err := vmxError("vmxoff", vmxoff()); err != nil {
		return err
	}
	cpu.WriteCR4(cpu.ReadCR4() &^ CR4_VMXE)
	return nil
}
