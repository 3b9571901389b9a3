package ethstream

import (
	"hash/crc32"
	"testing"
)

// BenchmarkPayloadSum compares the frame checksum's payload pass with the
// CRC-32C that version 1 used, on a full 1500-byte frame's payload. Run
// it as QEMU's default CPU sees it: GODEBUG=cpu.sse42=off on the host
// (Go's CRC-32C then walks tables), or the test binary under
// qemu-x86_64 -cpu qemu64 for TCG's cost.
func BenchmarkPayloadSum(b *testing.B) {
	p := make([]byte, 1500-headerLen)
	for i := range p {
		p[i] = byte(i * 7)
	}
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	for _, c := range []struct {
		name string
		sum  func([]byte) uint64
	}{
		{"xxh64", payloadSum},
		{"crc32c", func(p []byte) uint64 { return uint64(crc32.Update(0, castagnoli, p)) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			var sink uint64
			for b.Loop() {
				sink += c.sum(p)
			}
			_ = sink
		})
	}
}

// TestSumCatchesEveryBitFlip: flipping any one bit of a frame's header
// (bytes 0-35) or payload changes its checksum.
func TestSumCatchesEveryBitFlip(t *testing.T) {
	payload := []byte("a payload of a few dozen bytes, enough to span words")
	f := mkFrame(header{kind: kindData, session: testSession, seq: 7, ack: 3, window: 100}, payload)
	if _, _, why := parse(f); why != parseOK {
		t.Fatalf("the good frame parses as %d", why)
	}
	for i := ethHeaderLen; i < len(f); i++ {
		if i >= ethHeaderLen+offSum && i < frameOverhead {
			continue // the sum itself
		}
		for bit := 0; bit < 8; bit++ {
			g := append([]byte(nil), f...)
			g[i] ^= 1 << bit
			if _, _, why := parse(g); why == parseOK {
				t.Fatalf("byte %d bit %d flipped: the frame still parses", i, bit)
			}
		}
	}
}
