package vmguest

import (
	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
)

// The adapter's promises, checked by the compiler.
var (
	_ ftmirror.Memory      = (*VM)(nil)
	_ ftmirror.DirtySource = (*VM)(nil)
	_ ftmirror.Guest       = (*VM)(nil)
	_ ftmirror.OutputSink  = (*Splitter)(nil)
	_ virtionet.Backend    = (*Output)(nil)
	_ Quiescer             = (*virtionet.Device)(nil)
)

var _ virtio.GuestMemory = DMAMemory{}
