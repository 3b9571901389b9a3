package e1000

import (
	"encoding/binary"
	"fmt"
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
	// Extended transmit descriptors: the last TCP/IP context, the data of
	// the packet being gathered with its first descriptor's command and
	// POPTS, and what the segmentation found wrong.
	ctx          []byte
	pending      []byte
	pendingCmd   uint8
	pendingPopts uint8
	tsoErrors    []string
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
		switch {
		case d[txCmd]&TxCmdDEXT == 0: // legacy: the driver sends one buffer per frame
			m.sent = append(m.sent, append([]byte(nil), m.buffer(d, uint32(binary.LittleEndian.Uint16(d[descLength:])))...))
		case d[txDType]>>4 == 0: // TCP/IP context
			m.ctx = append(m.ctx[:0], d...)
		default: // data
			m.pending = append(m.pending, m.buffer(d, binary.LittleEndian.Uint32(d[descLength:])&0xfffff)...)
			if m.pendingCmd == 0 {
				m.pendingCmd, m.pendingPopts = d[txCmd], d[txPopts]
			}
			if d[txCmd]&TxCmdEOP != 0 {
				if m.pendingCmd&TxCmdTSE != 0 {
					m.segmentLocked(m.pending)
				} else {
					m.sent = append(m.sent, append([]byte(nil), m.pending...))
				}
				m.pending, m.pendingCmd = nil, 0
			}
		}
		if d[txCmd]&TxCmdRS != 0 {
			writeBack(d, TxStatusDD, 0)
		}
		m.regs[TDH] = (m.regs[TDH] + 1) % n
	}
	m.raise(IntTXDW)
}

func (m *model) buffer(d []byte, n uint32) []byte {
	buf, err := m.mem.Slice(binary.LittleEndian.Uint64(d), uint64(n))
	if err != nil {
		panic(err)
	}
	return buf
}

// segmentLocked does the 8254x's TCP segmentation (3.5) of a packet with
// the last context descriptor: each frame gets the packet's headers with
// the IP total length and ID and the TCP sequence number advanced, FIN
// and PSH only on the last, and the checksums the data descriptor's
// POPTS asks for: the IP one summed over IPCSS-IPCSE as it stands (so a
// field the driver did not zero spoils it), the TCP one over the segment
// with the frame's TCP length added to the field's pseudo-header sum.
func (m *model) segmentLocked(pkt []byte) {
	c := m.ctx
	if len(c) == 0 || c[txCmd]&TxCmdTSE == 0 {
		m.tsoErrors = append(m.tsoErrors, "TSE data without a TSE context")
		return
	}
	ipcss, ipcso, ipcse := int(c[ctxIPCSS]), int(c[ctxIPCSO]), int(binary.LittleEndian.Uint16(c[ctxIPCSE:]))
	tucss, tucso := int(c[ctxTUCSS]), int(c[ctxTUCSO])
	hdr, mss := int(c[ctxHdrLen]), int(binary.LittleEndian.Uint16(c[ctxMSS:]))
	if payLen := int(binary.LittleEndian.Uint32(c[ctxPayLen:]) & 0xfffff); payLen != len(pkt)-hdr {
		m.tsoErrors = append(m.tsoErrors, fmt.Sprintf("PAYLEN %d for a %d-byte payload", payLen, len(pkt)-hdr))
	}
	id := binary.BigEndian.Uint16(pkt[ipcss+4:])
	seq := binary.BigEndian.Uint32(pkt[tucss+4:])
	for i, off := 0, hdr; off < len(pkt); i, off = i+1, off+mss {
		end := min(off+mss, len(pkt))
		f := append(append([]byte(nil), pkt[:hdr]...), pkt[off:end]...)
		binary.BigEndian.PutUint16(f[ipcss+2:], uint16(len(f)-ipcss))
		binary.BigEndian.PutUint16(f[ipcss+4:], id+uint16(i))
		binary.BigEndian.PutUint32(f[tucss+4:], seq+uint32(off-hdr))
		if end < len(pkt) {
			f[tucss+13] &^= 0x01 | 0x08 // FIN, PSH
		}
		if m.pendingPopts&TxPoptsTXSM != 0 {
			ph := uint32(binary.BigEndian.Uint16(f[tucso:])) + uint32(len(f)-tucss)
			binary.BigEndian.PutUint16(f[tucso:], uint16(ph>>16+ph&0xffff))
			binary.BigEndian.PutUint16(f[tucso:], ^onesSum(f[tucss:]))
		}
		if m.pendingPopts&TxPoptsIXSM != 0 {
			binary.BigEndian.PutUint16(f[ipcso:], ^onesSum(f[ipcss:ipcse+1]))
		}
		m.sent = append(m.sent, f)
	}
}

// onesSum is the folded ones' complement sum of b (RFC 1071).
func onesSum(b []byte) uint16 {
	var s uint32
	for ; len(b) > 1; b = b[2:] {
		s += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
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
