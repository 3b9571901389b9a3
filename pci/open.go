package pci

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/doppel-ft/doppel/cpu"
)

// Open returns the configuration access of this machine: ECAM for segment
// 0 when the MCFG table describes one, else mechanism #1. The string says
// which, for the boot report. Bare metal only.
func Open() (Config, string) {
	m1 := &Mechanism1{Ports: cpu.Hardware}
	t, err := FindACPITable(ReadPhys, "MCFG")
	if err != nil {
		if errors.Is(err, ErrNoMCFG) {
			return m1, "mechanism #1 (no MCFG)"
		}
		return m1, fmt.Sprintf("mechanism #1 (%v)", err)
	}
	entries, err := ParseMCFG(t)
	if err != nil {
		return m1, fmt.Sprintf("mechanism #1 (%v)", err)
	}
	for _, e := range entries {
		if e.Segment != 0 {
			continue
		}
		start := e.Base + uint64(e.StartBus)<<20
		mem, err := MapPhys(start, (uint64(e.EndBus)-uint64(e.StartBus)+1)<<20)
		if err != nil {
			return m1, fmt.Sprintf("mechanism #1 (ECAM: %v)", err)
		}
		return &ECAM{StartBus: e.StartBus, EndBus: e.EndBus, Mem: mem},
			fmt.Sprintf("ECAM at %#x buses %d-%d (MCFG)", start, e.StartBus, e.EndBus)
	}
	return m1, "mechanism #1 (MCFG without segment 0)"
}

// MapPhys maps physical [pa, pa+size) through /dev/mem; the layer maps
// addresses that are not RAM uncached (boot/CONTRACT.md), so it serves
// MMIO BARs and ECAM as well as DMA memory.
func MapPhys(pa, size uint64) ([]byte, error) {
	_, b, err := mapPhys(pa, size)
	return b, err
}

// mapPhys returns the whole page-aligned mapping and the requested part.
func mapPhys(pa, size uint64) (whole, part []byte, err error) {
	fd, err := syscall.Open("/dev/mem", syscall.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("pci: open /dev/mem: %w", err)
	}
	defer syscall.Close(fd)
	off := pa & 4095
	b, err := syscall.Mmap(fd, int64(pa-off), int(size+off+4095)&^4095, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("pci: mmap /dev/mem [%#x+%#x): %w", pa, size, err)
	}
	return b, b[off : off+size], nil
}

// ReadPhys copies n bytes of physical memory at pa (a PhysReader).
func ReadPhys(pa uint64, n int) ([]byte, error) {
	whole, m, err := mapPhys(pa, uint64(n))
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), m...)
	syscall.Munmap(whole)
	return out, nil
}
