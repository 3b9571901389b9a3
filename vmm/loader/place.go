package loader

import "fmt"

// span is a half-open guest-physical range [start, end).
type span struct{ start, end uint64 }

func (a span) overlaps(b span) bool { return a.start < b.end && b.start < a.end }

const pageSize = 0x1000

func alignUp(v, a uint64) uint64 {
	if a <= 1 {
		return v
	}
	return (v + a - 1) &^ (a - 1)
}

// placeHigh finds the highest page-aligned address at or above floor
// where size bytes fit in RAM, end at or below limit, and overlap none of
// avoid.
func placeHigh(l Layout, size, floor, limit uint64, avoid ...span) (uint64, error) {
	if size == 0 {
		return 0, fmt.Errorf("empty: %w", ErrCorrupt)
	}
	ram := l.ram()
	for i := len(ram) - 1; i >= 0; i-- {
		r := ram[i]
		top := min(r.End(), limit)
	retry:
		if top < size {
			continue
		}
		start := (top - size) &^ (pageSize - 1)
		if start < max(r.Addr, floor) {
			continue
		}
		for _, a := range avoid {
			if a.overlaps(span{start, start + size}) {
				top = a.start
				goto retry
			}
		}
		return start, nil
	}
	return 0, fmt.Errorf("no room for %#x bytes in RAM between %#x and %#x (guest RAM ends at %#x): %w", size, floor, limit, l.RAMEnd(), ErrTooBig)
}
