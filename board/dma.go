package board

import "fmt"

// FlagDMA sizes the DMA slice: the top of the doppel-reserved region that
// the NIC drivers' DMA allocator (nic/dma) takes for descriptor rings and
// frame buffers. The EPT and guest side use only the rest, the guest part
// of SplitReserved, so a device writing a frame never lands in guest RAM
// or an EPT table.
const FlagDMA = "doppel.dma"

func init() {
	err := Known.Register(Flag{Name: FlagDMA, Kind: KindSize, Default: "4M",
		Help: "bytes at the top of the reserved region kept for NIC rings and buffers (DMA)"})
	if err != nil {
		panic(err) // a bad built-in flag is a programming error
	}
}

// SplitReserved splits the first doppel-reserved region of m into the
// guest part (bottom, for EPT and guest RAM) and the DMA part (the top
// dmaSize bytes, rounded up to 2 MiB so the guest part keeps large-page
// alignment). dmaSize 0 gives an empty DMA part.
func SplitReserved(m MemoryMap, dmaSize uint64) (guest, dma Region, err error) {
	res := m.Of(RegionDoppelReserved)
	if len(res) == 0 {
		return Region{}, Region{}, fmt.Errorf("board: no %s region in the memory map", RegionDoppelReserved)
	}
	r := res[0]
	const align = 2 << 20
	dmaSize = (dmaSize + align - 1) &^ (align - 1)
	if dmaSize >= r.Size() {
		return Region{}, Region{}, fmt.Errorf("board: %s=%s leaves nothing of the %s reserved region",
			FlagDMA, FormatBytes(dmaSize), FormatBytes(r.Size()))
	}
	split := r.End - dmaSize
	return Region{r.Start, split, RegionDoppelReserved}, Region{split, r.End, "dma"}, nil
}
