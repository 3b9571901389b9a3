package board

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// CPU is one processor as the boot layer lists it.
type CPU struct {
	Index  int    // the layer's CPU number, as used by sched_setaffinity
	APICID uint32 // local APIC ID
	Online bool   // started by the layer
}

// ParseCPUs parses /proc/doppel/cpus: one CPU a line,
// "<index> apic=<id> online=<0|1>". Unknown key=value fields are ignored.
func ParseCPUs(r io.Reader) ([]CPU, error) {
	var cpus []CPU
	err := eachLine(r, func(lineNo int, line string) error {
		f := strings.Fields(line)
		idx, err := strconv.Atoi(f[0])
		if err != nil || idx < 0 {
			return fmt.Errorf("line %d: index %q: want a CPU number", lineNo, f[0])
		}
		c := CPU{Index: idx}
		seen := map[string]bool{}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "apic":
				id, err := strconv.ParseUint(v, 0, 32)
				if err != nil {
					return fmt.Errorf("line %d: apic=%q: want a number", lineNo, v)
				}
				c.APICID = uint32(id)
			case "online":
				if v != "0" && v != "1" {
					return fmt.Errorf("line %d: online=%q: want 0 or 1", lineNo, v)
				}
				c.Online = v == "1"
			default:
				continue
			}
			seen[k] = true
		}
		if !seen["apic"] || !seen["online"] {
			return fmt.Errorf("line %d: %q: want \"<index> apic=<id> online=<0|1>\"", lineNo, line)
		}
		cpus = append(cpus, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("board: cpus: %w", err)
	}
	return cpus, nil
}

// ReadCPUs reads and parses the live /proc/doppel/cpus.
func ReadCPUs() ([]CPU, error) {
	data, err := ReadFile(CPUsPath)
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	return ParseCPUs(bytes.NewReader(data))
}

// Online returns the online CPUs of cpus.
func Online(cpus []CPU) []CPU {
	var out []CPU
	for _, c := range cpus {
		if c.Online {
			out = append(out, c)
		}
	}
	return out
}
