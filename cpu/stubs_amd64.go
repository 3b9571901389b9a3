package cpu

// Declarations of the assembly stubs in cpu_amd64.s. Callers use the
// exported wrappers in cpu.go.

//go:noescape
func cpuid(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)

func rdtsc() uint64

func rdtscp() (tsc uint64, aux uint32)

func rdmsr(msr uint32) uint64

func wrmsr(msr uint32, value uint64)

func inb(port uint16) uint8

func outb(port uint16, value uint8)

func inw(port uint16) uint16

func outw(port uint16, value uint16)

func inl(port uint16) uint32

func outl(port uint16, value uint32)

func readCR0() uint64

func readCR3() uint64

func readCR4() uint64

func writeCR0(v uint64)

func writeCR4(v uint64)

//go:noescape
func readDebugRegs(d *DebugRegs)

//go:noescape
func writeDebugRegs(d *DebugRegs)
