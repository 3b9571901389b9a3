package loader

import "fmt"

// Memory is guest-physical memory as the loader writes it. WriteAt copies p
// to guest-physical address addr; it fails if any byte is not backed.
type Memory interface {
	WriteAt(p []byte, addr uint64) error
}

// Flat is guest memory held in one slice covering guest-physical 0..len.
type Flat []byte

// WriteAt implements Memory.
func (f Flat) WriteAt(p []byte, addr uint64) error {
	if addr > uint64(len(f)) || uint64(len(p)) > uint64(len(f))-addr {
		return fmt.Errorf("guest write %#x+%#x beyond guest memory (%#x): %w", addr, len(p), len(f), ErrTooBig)
	}
	copy(f[addr:], p)
	return nil
}

// zero clears [addr, addr+size) of guest memory in bounded chunks.
func zero(mem Memory, addr, size uint64) error {
	var buf [4096]byte
	for size > 0 {
		n := min(size, uint64(len(buf)))
		if err := mem.WriteAt(buf[:n], addr); err != nil {
			return err
		}
		addr += n
		size -= n
	}
	return nil
}
