package ftmirror

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

func leU64(b []byte) uint64     { return binary.LittleEndian.Uint64(b) }
func putU32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func crc32c(b []byte) uint32    { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }
func blankLike(r *rig) *simguest.Guest {
	r.sg = simguest.NewBlank(r.params)
	return r.sg
}
