package selftest

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"unsafe"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/cpu"
)

var hasRDTSCP = cpu.HasRDTSCP()

// cpuMask is a Linux cpu_set_t big enough for 1024 CPUs.
type cpuMask [1024 / 64]uint64

func (m *cpuMask) set(cpu int)      { m[cpu/64] |= 1 << (cpu % 64) }
func (m *cpuMask) has(cpu int) bool { return m[cpu/64]&(1<<(cpu%64)) != 0 }

func (m *cpuMask) cpus() []int {
	var out []int
	for c := 0; c < 64*len(m); c++ {
		if m.has(c) {
			out = append(out, c)
		}
	}
	return out
}

func getAffinity() (cpuMask, error) {
	var m cpuMask
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	if e != 0 {
		return m, fmt.Errorf("sched_getaffinity: %w", e)
	}
	return m, nil
}

func setAffinity(m *cpuMask) error {
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(*m), uintptr(unsafe.Pointer(m)))
	if e != 0 {
		return fmt.Errorf("sched_setaffinity(%v): %w", m.cpus(), e)
	}
	return nil
}

// placement is what a thread pinned to one CPU saw there.
type placement struct {
	cpu    int
	apicID uint32
	tscAux uint32 // IA32_TSC_AUX by RDTSCP, when the CPU has it
	cr0    uint64 // on bare metal only (ring 0)
	err    error
}

// CR0's cache-disable and not-write-through bits (SDM Vol. 3A 2.5). An
// application processor leaves INIT with both set (Table 10-1); one that
// keeps them runs with its caches off, many times slower on real hardware
// and invisible in an emulator.
const (
	cr0NW = 1 << 29
	cr0CD = 1 << 30
)

// runPinned locks a goroutine to its thread, pins the thread to cpu, and
// reads the APIC ID twice with a yield between (the thread must stay put).
// It restores the thread's affinity before unlocking it.
func runPinned(cpuIndex int, all cpuMask, bareMetal bool) (p placement) {
	p.cpu = cpuIndex
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var one cpuMask
	one.set(cpuIndex)
	if p.err = setAffinity(&one); p.err != nil {
		return p
	}
	defer func() {
		if err := setAffinity(&all); err != nil && p.err == nil {
			p.err = fmt.Errorf("restoring affinity: %w", err)
		}
	}()
	p.apicID = cpu.APICID()
	if bareMetal {
		p.cr0 = cpu.ReadCR0()
	}
	if hasRDTSCP {
		_, p.tscAux = cpu.RDTSCP()
	}
	runtime.Gosched()
	if again := cpu.APICID(); again != p.apicID {
		p.err = fmt.Errorf("cpu %d: APIC ID changed from %d to %d while pinned", cpuIndex, p.apicID, again)
	}
	return p
}

// cpuSpread pins one thread to each CPU the process may use and checks, by
// the APIC ID CPUID reports there, that the code really ran on that many
// distinct CPUs (and, on bare metal, on the CPU the layer lists under that
// index).
func cpuSpread(ctx context.Context, cfg *Config) error {
	all, err := getAffinity()
	if err != nil {
		return err
	}
	cpus := all.cpus()
	if cfg.BareMetal && len(cfg.CPUs) > 0 {
		if online := len(board.Online(cfg.CPUs)); online != len(cpus) {
			return fmt.Errorf("sched_getaffinity reports %d CPUs, %s lists %d online", len(cpus), board.CPUsPath, online)
		}
	}
	results := make([]placement, len(cpus))
	var wg sync.WaitGroup
	for i, c := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runPinned(c, all, cfg.BareMetal)
		}()
	}
	wg.Wait()
	byAPIC := map[uint32]int{}
	for _, p := range results {
		if p.err != nil {
			return p.err
		}
		if prev, dup := byAPIC[p.apicID]; dup {
			return fmt.Errorf("cpus %d and %d both ran on APIC ID %d: pinning did not move the thread", prev, p.cpu, p.apicID)
		}
		byAPIC[p.apicID] = p.cpu
		if p.cr0&(cr0CD|cr0NW) != 0 {
			return fmt.Errorf("cpu %d runs with its caches disabled: CR0 %#x has CD or NW set", p.cpu, p.cr0)
		}
		// Linux loads TSC_AUX with (node << 12) | cpu; the boot layer need not.
		if hasRDTSCP && !cfg.BareMetal && int(p.tscAux&0xfff) != p.cpu {
			return fmt.Errorf("pinned to cpu %d, RDTSCP reports TSC_AUX %#x", p.cpu, p.tscAux)
		}
		if want, ok := layerAPICID(cfg.CPUs, p.cpu); cfg.BareMetal && ok && want != p.apicID {
			return fmt.Errorf("pinned to cpu %d, ran on APIC ID %d; %s says apic=%d", p.cpu, p.apicID, board.CPUsPath, want)
		}
	}
	ids := make([]int, 0, len(byAPIC))
	for id := range byAPIC {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	aux := ""
	if hasRDTSCP {
		aux = ", TSC_AUX"
		for _, p := range results {
			aux += fmt.Sprintf(" %#x", p.tscAux)
		}
	}
	cfg.logf("cpu-spread: %d CPUs %v ran on APIC IDs %v%s", len(cpus), cpus, ids, aux)
	return ctx.Err()
}

func layerAPICID(cpus []board.CPU, index int) (uint32, bool) {
	for _, c := range cpus {
		if c.Index == index {
			return c.APICID, true
		}
	}
	return 0, false
}
