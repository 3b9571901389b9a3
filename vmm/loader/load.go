package loader

import "fmt"

// Config is what the machine hands the loader.
type Config struct {
	// Layout is the guest's memory map; Memory must back all its RAM.
	Layout Layout
	// Kernel is the image; its format is detected (Detect).
	Kernel []byte
	// Cmdline is the kernel's command line.
	Cmdline string
	// Initrd is a Linux kernel's initial ramdisk. A multiboot kernel gets
	// it as its first module, with the command line "initrd".
	Initrd []byte
	// Modules are a multiboot kernel's modules; a Linux kernel takes none.
	Modules []Module
}

// Load detects the kernel's format, loads it with its initrd or modules
// into mem, and returns its start state. Nothing it reports is fatal to
// the caller: every failure is a wrapped error naming what was wrong (see
// the Err variables), and guest memory may then hold a partial load.
func Load(mem Memory, c Config) (*BootState, Kind, error) {
	kind, err := Detect(c.Kernel)
	if err != nil {
		return nil, 0, err
	}
	var s *BootState
	switch kind {
	case KindBzImage:
		if len(c.Modules) > 0 {
			return nil, kind, fmt.Errorf("%d modules for a Linux kernel, which takes only an initrd: %w", len(c.Modules), ErrUnsupported)
		}
		s, err = LoadLinux(mem, c.Layout, c.Kernel, c.Cmdline, c.Initrd)
	case KindMultiboot1, KindMultiboot2:
		mods := c.Modules
		if c.Initrd != nil {
			mods = append([]Module{{Data: c.Initrd, Cmdline: "initrd"}}, mods...)
		}
		if kind == KindMultiboot1 {
			s, err = loadMultiboot1(mem, c.Layout, c.Kernel, c.Cmdline, mods)
		} else {
			s, err = loadMultiboot2(mem, c.Layout, c.Kernel, c.Cmdline, mods)
		}
	default:
		return nil, kind, fmt.Errorf("a plain %v file without a multiboot header has no defined start state: %w", kind, ErrUnsupported)
	}
	if err != nil {
		return nil, kind, err // the loaders' errors name the format
	}
	return s, kind, nil
}
