package e1000

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/doppel-ft/doppel/nic/dma"
	"github.com/doppel-ft/doppel/nic/irq"
)

// model is a device-side model of the 82540EM's registers and legacy
// rings, just enough to test what the driver does with each descriptor:
// it owns RDH/TDH, writes back descriptors like the hardware (status last),
// and raises its line when ICR&IMS is non-zero.
type model struct {
	mu     sync.Mutex
	regs   map[uint32]uint32
	mem    *dma.Region
	line   *irq.Chan
	eeprom [64]uint16
	link   bool
	txHold bool // leave transmit descriptors pending until complete()
	// runningStats keeps CRCERRS, RXERRC and MPC as running totals, as
	// QEMU's e1000 does, instead of clearing them on read (13.7).
	runningStats bool
	sent         [][]byte // frames the driver transmitted
	writes       []uint32 // register offsets written, in order
	resets       int
	statusReads  int
}

func newModel(mem *dma.Region, mac [6]byte, preload bool) *model {
	m := &model{regs: map[uint32]uint32{}, mem: mem, line: irq.NewChan(), link: true}
	for i := 0; i < 3; i++ {
		m.eeprom[i] = uint16(mac[2*i]) | uint16(mac[2*i+1])<<8
	}
	if preload {
		m.regs[RAL0] = binary.LittleEndian.Uint32(mac[:4])
		m.regs[RAH0] = uint32(binary.LittleEndian.Uint16(mac[4:])) | 1<<31
	}
	return m
}

func (m *model) Read8(off uint32) uint8   { return uint8(m.Read32(off&^3) >> (8 * (off & 3))) }
func (m *model) Read16(off uint32) uint16 { return uint16(m.Read32(off&^3) >> (8 * (off & 3))) }
func (m *model) Write8(off uint32, v uint8) {
	panic("e1000 model: 8-bit register write")
}
func (m *model) Write16(off uint32, v uint16) {
	panic("e1000 model: 16-bit register write")
}

func (m *model) Read32(off uint32) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch off {
	case ICR:
		v := m.regs[ICR]
		m.regs[ICR] = 0
		return v
	case CRCERRS, RXERRC, MPC, RUC, ROC:
		v := m.regs[off]
		if !m.runningStats || off == RUC || off == ROC {
			m.regs[off] = 0
		}
		return v
	case STATUS:
		m.statusReads++
		if m.link {
			return StatusLU | CtrlFD
		}
		return CtrlFD
	}
	return m.regs[off]
}

func (m *model) Write32(off uint32, v uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes = append(m.writes, off)
	switch off {
	case CTRL:
		if v&CtrlRST != 0 {
			ral, rah := m.regs[RAL0], m.regs[RAH0]
			m.regs = map[uint32]uint32{RAL0: ral, RAH0: rah}
			m.resets++
			v &^= CtrlRST
		}
	case IMS:
		m.regs[IMS] |= v
		m.raise(0)
		return
	case IMC:
		m.regs[IMS] &^= v
		return
	case EERD:
		if v&EerdStart != 0 {
			v = v&0xFF00 | EerdDone | uint32(m.eeprom[(v>>EerdAddrShift)&63])<<EerdDataShift
		}
	case TDT:
		m.regs[TDT] = v
		if !m.txHold {
			m.transmitLocked()
		}
		return
	}
	m.regs[off] = v
}

// raise sets cause bits and fires the line if an unmasked cause is set.
func (m *model) raise(cause uint32) {
	m.regs[ICR] |= cause
	if m.regs[ICR]&m.regs[IMS] != 0 {
		m.line.Fire()
	}
}

func (m *model) desc(base uint32, i uint32) []byte {
	pa := uint64(m.regs[base+4])<<32 | uint64(m.regs[base])
	b, err := m.mem.Slice(pa+uint64(i*descSize), descSize)
	if err != nil {
		panic(err)
	}
	return b
}

// writeBack stores the status dword (status, errors, special) atomically,
// after the rest of the descriptor, as the device's write-back does.
func writeBack(desc []byte, status, errs uint8) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&desc[12])), uint32(status)|uint32(errs)<<8)
}

// transmitLocked sends every descriptor from TDH to TDT.
func (m *model) transmitLocked() {
	if m.regs[TCTL]&TctlEN == 0 {
		return
	}
	n := m.regs[TDLEN] / descSize
	for m.regs[TDH] != m.regs[TDT] {
		d := m.desc(TDBAL, m.regs[TDH])
		buf, err := m.mem.Slice(binary.LittleEndian.Uint64(d), uint64(binary.LittleEndian.Uint16(d[descLength:])))
		if err != nil {
			panic(err)
		}
		m.sent = append(m.sent, append([]byte(nil), buf...))
		writeBack(d, TxStatusDD, 0)
		m.regs[TDH] = (m.regs[TDH] + 1) % n
	}
	m.raise(IntTXDW)
}

// complete finishes the held transmit descriptors.
func (m *model) complete() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.transmitLocked()
}

// rxBufSize decodes RCTL.BSIZE and BSEX as the hardware does (13.4.22).
func rxBufSize(rctl uint32) int {
	size := 2048 >> ((rctl >> 16) & 3)
	if rctl&RctlBSEX != 0 {
		size *= 16
	}
	return size
}

// inject receives one frame with the given error bits into the next
// descriptors: as the hardware, a frame longer than one buffer takes
// several, EOP on the last (eop false leaves it off there too). Unlike
// the hardware it does not drop long frames without RCTL.LPE, so that the
// driver's own check of them is tested. False (and MPC counted) when the ring has no free descriptor, as the
// hardware's head would meet its tail.
func (m *model) inject(frame []byte, errs uint8, eop bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.regs[RDLEN] / descSize
	if m.regs[RCTL]&RctlEN == 0 || n == 0 || m.regs[RDH] == m.regs[RDT] {
		m.regs[MPC]++
		return false
	}
	size := rxBufSize(m.regs[RCTL])
	for off := 0; ; {
		if m.regs[RDH] == m.regs[RDT] {
			m.regs[MPC]++ // the rest of the frame has no room
			return false
		}
		d := m.desc(RDBAL, m.regs[RDH])
		buf, err := m.mem.Slice(binary.LittleEndian.Uint64(d), uint64(size))
		if err != nil {
			panic(err)
		}
		l := copy(buf, frame[off:])
		off += l
		binary.LittleEndian.PutUint16(d[descLength:], uint16(l))
		status := uint8(RxStatusDD)
		if eop && off == len(frame) {
			status |= RxStatusEOP
		}
		writeBack(d, status, errs)
		m.regs[RDH] = (m.regs[RDH] + 1) % n
		if off == len(frame) {
			break
		}
	}
	m.raise(IntRXT0)
	return true
}

func (m *model) setLink(up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.link = up
	m.raise(IntLSC)
}

func (m *model) reg(off uint32) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.regs[off]
}

func (m *model) frames() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.sent...)
}
