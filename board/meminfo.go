package board

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Meminfo is /proc/meminfo as a map from key (MemTotal, MemFree,
// DoppelReserved, ...) to bytes. Keys without a unit (HugePages_Total) keep
// their plain count.
type Meminfo map[string]uint64

// ParseMeminfo parses the Linux /proc/meminfo format, "Key:   <n> kB".
func ParseMeminfo(r io.Reader) (Meminfo, error) {
	mi := Meminfo{}
	err := eachLine(r, func(lineNo int, line string) error {
		key, rest, ok := strings.Cut(line, ":")
		f := strings.Fields(rest)
		if !ok || key == "" || len(f) == 0 || len(f) > 2 {
			return fmt.Errorf("line %d: %q: want \"Key: <n> kB\"", lineNo, line)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("line %d: %s: %q is not a number", lineNo, key, f[0])
		}
		if len(f) == 2 {
			if f[1] != "kB" {
				return fmt.Errorf("line %d: %s: unit %q, want kB", lineNo, key, f[1])
			}
			n <<= 10
		}
		mi[key] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("board: meminfo: %w", err)
	}
	return mi, nil
}

// ReadMeminfo reads and parses the live /proc/meminfo.
func ReadMeminfo() (Meminfo, error) {
	data, err := ReadFile(MeminfoPath)
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	return ParseMeminfo(bytes.NewReader(data))
}

// Get returns the value of key in bytes, or an error naming the key when
// the layer did not provide it.
func (mi Meminfo) Get(key string) (uint64, error) {
	n, ok := mi[key]
	if !ok {
		return 0, fmt.Errorf("board: meminfo has no %s", key)
	}
	return n, nil
}
