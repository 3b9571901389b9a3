package ftmirror

import (
	"encoding/binary"

	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

func leU64(b []byte) uint64     { return binary.LittleEndian.Uint64(b) }
func putU64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
func blankLike(r *rig) *simguest.Guest {
	r.sg = simguest.NewBlank(r.params)
	return r.sg
}
