// Package dirtytest checks doppel's dirty-page harvest against a guest that
// says what it wrote: the test guest (testguest/) writes a seed-reproducible
// set of pages each round and reports them through the doppel test port;
// the Device here compares that set with the EPT harvest and prints one
// console line per round. It also drives the isolation probe: the guest
// writes to addresses doppel names, outside its memory and where the EPT
// tables and the kernel live on the host, and doppel checks that each one
// either faults as an EPT violation or lands in the guest's own RAM.
//
// Under VT-x the test guest runs as a one-vCPU vmm.Machine (run.go): its
// vCPU (testCPU, one HWVCPU.Step per Machine step) is built with VMX,
// EPT and devices on the Machine's thread pinned to the chosen CPU.
//
// # The doppel test port
//
// Fourteen 32-bit I/O ports at PortBase (0xE00), all accessed with IN
// EAX,DX / OUT DX,EAX:
//
//	off  dir  name      meaning
//	0x00 in   CMD       next command: 0 stop (the guest halts), 1 round, 2 probe,
//	                    3 cpuid, 4 spin, 5 triple fault (the VM-exit phases)
//	0x04 in   SEED      the round's seed (reading it starts the round: doppel
//	                    harvests and discards what was dirty before)
//	0x08 in   COUNT     how many pseudo-random draws the round makes
//	0x0C in   MEMSIZE   guest RAM size in bytes
//	0x10 out  PAGE      one page number the guest wrote this round
//	0x14 out  DONE      round done; the value is how many PAGE writes it made
//	0x18 out  FIXUP     where to resume (EIP) after a probe write faults
//	0x1C in   PROBE     next guest-physical address to write, 0 when done
//	0x20 out  PROBED    the probe at the last PROBE address did not fault
//	0x24 in   VERSION   protocol version, 2
//	0x28 in   SPIN      iterations of the spin loop in bits 30:0, bit 31 set:
//	                    spin with IF=1 (reading starts the spin)
//	0x2C out  SPUN      the spin loop ended
//	0x30 out  CPUID     one register of the CPUID report, in order: leaf 1
//	                    ECX, then leaf 0x40000000 EAX, EBX, ECX, EDX
//	0x34 out  MARK      start, then end of a timed loop of CPUID exits
//
// # The VM-exit phases
//
// With doppel.vmexittest=1, after the rounds and the probe, the guest is
// sent through more commands (vmexit.go): cpuid (it executes CPUID and
// reports what it saw), spin twice, first with IF=0, then with IF=1 (a
// counted loop of two instructions per iteration that never exits by
// itself, so only the host's timer interrupts, as external-interrupt exits,
// or the VMX-preemption timer take the CPU back) and triple fault (it loads an
// empty IDT and executes INT3: #BP, #GP and #DF all miss the IDT, SDM Vol.
// 3A 7.15 "Interrupt 8 Double Fault", and the CPU shuts down, which VMX
// turns into a triple-fault exit, Vol. 3C 26.2).
//
// # The guest's page choice (Model)
//
// x starts at the seed (0 is replaced by 0x9E3779B9); each draw steps
// xorshift32 (x ^= x<<13; x ^= x>>17; x ^= x<<5), takes page p = x mod
// (MEMSIZE/4096), skips it when p lies in the guest's own window
// [WindowFirstPage, WindowEndPage) (its stack and code), and otherwise
// writes the 32-bit x at byte (x>>8 & 0xFFC) of page p and reports p. The
// report re-runs the same draws, so the guest keeps no list.
package dirtytest

// Port offsets from PortBase.
const (
	PortBase    = 0xE00
	PortCmd     = 0x00
	PortSeed    = 0x04
	PortCount   = 0x08
	PortMemSize = 0x0C
	PortPage    = 0x10
	PortDone    = 0x14
	PortFixup   = 0x18
	PortProbe   = 0x1C
	PortProbed  = 0x20
	PortVersion = 0x24
	PortSpin    = 0x28
	PortSpun    = 0x2C
	PortCPUID   = 0x30
	PortMark    = 0x34
	NumPorts    = 0x38

	ProtocolVersion = 2
)

// Commands read from PortCmd.
const (
	CmdStop  = 0
	CmdRound = 1
	CmdProbe = 2
	CmdCPUID = 3
	CmdSpin  = 4
	// CmdTripleFault is the last command a guest ever reads.
	CmdTripleFault = 5
)

// Guest memory layout the test guest is built for (testguest/guest.S).
const (
	// GuestLoadAddr is where the guest image is loaded and entered; the
	// stack grows down from it.
	GuestLoadAddr = 0x10_0000
	// The window of pages the guest never picks: 64 KiB of stack below
	// GuestLoadAddr and 64 KiB of image above. Extra dirty pages are
	// allowed only here.
	WindowFirstPage = 0xF0
	WindowEndPage   = 0x110
	// MinMemSize is the smallest guest RAM the layout fits in.
	MinMemSize = 2 << 20
)

// xorshift32 is Marsaglia's 13/17/5 generator.
func xorshift32(x uint32) uint32 {
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	return x
}

// Write is one write the model makes.
type Write struct {
	Page   uint32
	Offset uint32 // byte offset in the page
	Value  uint32
}

// Model returns the writes the guest makes for seed and count in a guest of
// memSize bytes, in order (a page may repeat).
func Model(seed, count, memSize uint32) []Write {
	npages := memSize / 4096
	x := seed
	if x == 0 {
		x = 0x9E37_79B9
	}
	var w []Write
	for range count {
		x = xorshift32(x)
		p := x % npages
		if p >= WindowFirstPage && p < WindowEndPage {
			continue
		}
		w = append(w, Write{Page: p, Offset: x >> 8 & 0xFFC, Value: x})
	}
	return w
}

// InWindow reports whether page p is in the guest's own stack/code window.
func InWindow(p uint64) bool { return p >= WindowFirstPage && p < WindowEndPage }
