package ftmirror

// snapshot holds the pages a checkpoint copies while the guest is paused.
// It is made of chunks of snapChunkPages pages that are allocated once and
// reused by every checkpoint and session: growing it allocates only the
// missing chunks, and nothing allocated is ever dropped. (A single buffer
// grown by reallocation cost the whole new size each time, and with the
// simulator's pre-faulted allocator that took 0.9 s for 167 MB on a loaded
// host, while the old buffer, outside the Go heap, was never freed.)
type snapshot struct {
	alloc  func(int) []byte
	chunks [][]byte
}

// snapChunkPages is the size of a snapshot chunk: 1 MiB.
const snapChunkPages = 256

// capacity is how many pages the snapshot holds without growing.
func (s *snapshot) capacity() int { return len(s.chunks) * snapChunkPages }

// grow makes the snapshot hold at least pages pages and returns how many
// chunks it allocated.
func (s *snapshot) grow(pages int) int {
	n := 0
	for s.capacity() < pages {
		s.chunks = append(s.chunks, s.alloc(snapChunkPages*PageSize))
		n++
	}
	return n
}

// page returns slot i (< capacity).
func (s *snapshot) page(i int) []byte {
	c := s.chunks[i/snapChunkPages]
	off := (i % snapChunkPages) * PageSize
	return c[off : off+PageSize : off+PageSize]
}
