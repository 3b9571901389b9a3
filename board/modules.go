package board

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"strings"
)

// Module is one multiboot module: its physical range and its command line
// (the first word is usually the file name).
type Module struct {
	Start, End uint64
	Name       string
}

// Size returns the module's length in bytes.
func (m Module) Size() uint64 { return m.End - m.Start }

// ParseModules parses /proc/doppel/modules: one module a line,
// "0x<start> 0x<end> <name>", where the name is the rest of the line and may
// contain spaces or be empty.
func ParseModules(r io.Reader) ([]Module, error) {
	var mods []Module
	err := eachLine(r, func(lineNo int, line string) error {
		f := strings.SplitN(line, " ", 3)
		if len(f) < 2 {
			return fmt.Errorf("line %d: %q: want \"0x<start> 0x<end> <name>\"", lineNo, line)
		}
		start, err := parseHex(f[0])
		if err != nil {
			return fmt.Errorf("line %d: start: %w", lineNo, err)
		}
		end, err := parseHex(f[1])
		if err != nil {
			return fmt.Errorf("line %d: end: %w", lineNo, err)
		}
		if end < start {
			return fmt.Errorf("line %d: inverted module %#x-%#x", lineNo, start, end)
		}
		m := Module{Start: start, End: end}
		if len(f) == 3 {
			m.Name = strings.TrimSpace(f[2])
		}
		mods = append(mods, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("board: modules: %w", err)
	}
	return mods, nil
}

// ReadModules reads and parses the live /proc/doppel/modules.
func ReadModules() ([]Module, error) {
	data, err := ReadFile(ModulesPath)
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	return ParseModules(bytes.NewReader(data))
}

// FindModule returns the module called name: the one whose whole command
// line, first word, first word's base name, or that base name without its
// extension equals name, in that order of preference. GRUB's
// `module2 /boot/x.bin x` gives the command line "x"; QEMU's
// `-initrd "/path/x.bin x"` gives the whole string, found by the base name.
func FindModule(mods []Module, name string) (Module, bool) {
	matchers := []func(Module) bool{
		func(m Module) bool { return m.Name == name },
		func(m Module) bool { return firstWord(m.Name) == name },
		func(m Module) bool { return path.Base(firstWord(m.Name)) == name },
		func(m Module) bool {
			base := path.Base(firstWord(m.Name))
			return strings.TrimSuffix(base, path.Ext(base)) == name
		},
	}
	for _, match := range matchers {
		for _, m := range mods {
			if match(m) {
				return m, true
			}
		}
	}
	return Module{}, false
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}
