package e1000

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/nic"
	"github.com/doppel-ft/doppel/nic/dma"
	"github.com/doppel-ft/doppel/nic/irq"
	"github.com/doppel-ft/doppel/nic/mmio"
)

// Config is what Open needs. Zero sizes take the defaults in parentheses.
type Config struct {
	Name    string     // interface name ("e1000-0")
	Regs    mmio.Space // BAR 0, at least 128 KiB
	DMA     *dma.Region
	IRQ     irq.Line
	RxRing  int // receive descriptors, a multiple of 8 (256)
	TxRing  int // transmit descriptors, a multiple of 8 (256)
	RxQueue int // received frames waiting for Receive (1024)
	// MTU is the largest payload (1500). Above 1500 the driver turns on
	// long packet reception (RCTL.LPE) with buffers of up to 16 KiB
	// (RCTL.BSEX), so each frame still fits one descriptor; both ends of
	// a link must agree on it. At most MaxMTU.
	MTU int
	// Watchdog is the period of the lost-interrupt watchdog
	// (nic.WatchdogPeriod); negative turns it off.
	Watchdog time.Duration
}

// stdMTU is the Ethernet payload limit without long packets (RCTL.LPE
// off: the device drops frames over 1522 bytes).
const stdMTU = 1500

// MaxMTU is the largest MTU the driver accepts: a 16384-byte buffer
// (RCTL.BSIZE 16384 with BSEX) holds the frame, its header and a VLAN
// tag; the 8254x manual gives 16128 bytes as the longest frame (the
// Ethernet CRC included) the device receives with LPE.
const MaxMTU = 16110

// bufSizeFor returns the receive and transmit buffer size for an MTU and
// its RCTL bits (13.4.22: BSIZE with BSEX; LPE above the standard MTU):
// the smallest buffer that holds a whole frame, so no frame spans
// descriptors.
func bufSizeFor(mtu int) (size int, rctl uint32) {
	frame := mtu + nic.HeaderLen + 4 + 4 // a VLAN tag and the CRC, in case
	switch {
	case mtu <= stdMTU:
		return 2048, RctlBSIZE2K
	case frame <= 4096:
		return 4096, RctlLPE | RctlBSEX | RctlBSIZE4K
	case frame <= 8192:
		return 8192, RctlLPE | RctlBSEX | RctlBSIZE8K
	default:
		return 16384, RctlLPE | RctlBSEX | RctlBSIZE16K
	}
}

// Device is an open 82540EM. It implements nic.NIC.
type Device struct {
	cfg   Config
	regs  mmio.Space
	mac   nic.MAC
	stats nic.Stats
	rxq   *nic.RxQueue
	ready nic.TxSignal

	mtu     int    // Config.MTU
	bufSize int    // each receive and transmit buffer
	rctlBuf uint32 // RCTL bits of the buffer size

	rxDesc, rxBufs dma.Buffer
	txDesc, txBufs dma.Buffer

	rxMu   sync.Mutex
	rxNext int // next receive descriptor the device fills
	// rxDropping: inside a frame that spans descriptors, dropped whole.
	// It outlives one receive pass because the device may write the
	// frame's last piece after the pass that saw its first.
	rxDropping bool

	txMu    sync.Mutex
	txTail  int // next free transmit descriptor
	txRung  int // the last TDT written: frames before txTail not yet told
	txClean int // oldest descriptor not yet reclaimed
	txFull  bool

	hw     HWCounters
	hwMu   sync.Mutex // the statistics registers' readers
	hwRegs [5]hwStat  // CRCERRS, RXERRC, MPC, RUC, ROC
	// linkUp is STATUS.LU as last read: at open, at each link status
	// change interrupt (LSC) and at each watchdog tick. Transmit checks it
	// for every frame, and a register read is an uncached bus round trip
	// (an exit to the device model in an emulator).
	linkUp atomic.Bool
	closed atomic.Bool
	done   chan struct{}
	stop   chan struct{}
	// watchdog is closed once the lost-interrupt watchdog has ended.
	watchdog <-chan struct{}
	// serviceMu is held by each service pass. Close takes it, and txMu,
	// once it has marked the device closed, so no pass and no transmit
	// still uses the rings when the DMA memory is freed (and reused by the
	// next Open on it). The interrupt goroutine itself may stay blocked in
	// its Wait: closing a line does not wake its reader on bare metal.
	serviceMu sync.Mutex
}

// HWCounters are the device's own error statistics (13.7), accumulated.
type HWCounters struct {
	CRCErrors, RxErrors, Missed, Undersize, Oversize atomic.Uint64
}

// Open resets the device, reads its MAC, sets up both rings and starts the
// interrupt goroutine.
func Open(cfg Config) (*Device, error) {
	if cfg.MTU == 0 {
		cfg.MTU = stdMTU
	}
	if cfg.MTU < 68 || cfg.MTU > MaxMTU {
		return nil, fmt.Errorf("e1000: MTU %d: want 68-%d", cfg.MTU, MaxMTU)
	}
	buf, rctl := bufSizeFor(cfg.MTU)
	// Default rings: 256 standard buffers each way (1 MiB of DMA memory
	// for both); with long frames 128 receive buffers, so that a round of
	// the interrupt goroutine, late on a busy CPU, finds room for 1-2 MiB
	// of frames, and 64 transmit ones (2-3 MiB in all: doppel.dma).
	rxRing, txRing := 256, 256
	if buf > 2048 {
		rxRing, txRing = 128, 64
	}
	if cfg.RxRing == 0 {
		cfg.RxRing = rxRing
	}
	if cfg.TxRing == 0 {
		cfg.TxRing = txRing
	}
	if cfg.RxQueue == 0 {
		cfg.RxQueue = 1024
	}
	if cfg.Watchdog == 0 {
		cfg.Watchdog = nic.WatchdogPeriod
	}
	if cfg.RxRing%8 != 0 || cfg.TxRing%8 != 0 || cfg.RxRing < 8 || cfg.TxRing < 8 {
		return nil, fmt.Errorf("e1000: ring sizes %d/%d: want multiples of 8 (RDLEN/TDLEN are multiples of 128 bytes)", cfg.RxRing, cfg.TxRing)
	}
	d := &Device{cfg: cfg, regs: cfg.Regs, mtu: cfg.MTU, bufSize: buf, rctlBuf: rctl,
		ready: nic.NewTxSignal(), done: make(chan struct{}), stop: make(chan struct{})}
	d.rxq = nic.NewRxQueue(cfg.RxQueue, cfg.MTU+nic.HeaderLen, &d.stats)
	if err := d.reset(); err != nil {
		return nil, err
	}
	d.mac = d.readMAC()
	if err := d.alloc(); err != nil {
		d.free()
		return nil, err
	}
	d.setupRx()
	d.setupTx()
	d.regs.Read32(ICR)
	d.readLink()
	d.regs.Write32(IMS, IntLSC|IntRXT0|IntRXDMT0|IntRXO|IntRXSEQ|IntTXDW)
	go d.interrupts()
	d.watchdog = nic.StartWatchdog(&d.stats, d.cfg.Watchdog, d.stop, d.pending, d.Service)
	return d, nil
}

// pending reports whether the device has written back a receive or
// transmit descriptor the driver has not taken; the marker is the
// driver's position in both rings. The watchdog calls it every period,
// which also reads the link state again, in case an LSC interrupt was
// lost, and the statistics registers.
func (d *Device) pending() (uint64, bool) {
	d.readLink()
	d.readHWCounters()
	d.rxMu.Lock()
	rx := d.rxNext
	rxWork := atomicLoad8(&d.rxDesc.Mem[rx*descSize+rxStatus])&RxStatusDD != 0
	d.rxMu.Unlock()
	d.txMu.Lock()
	tx := d.txClean
	txWork := tx != d.txTail && atomicLoad8(&d.txDesc.Mem[tx*descSize+txStatus])&TxStatusDD != 0
	d.txMu.Unlock()
	return uint64(rx)<<32 | uint64(tx), rxWork || txWork
}

// reset follows 14.3-14.4: mask interrupts, set CTRL.RST, wait for it to
// clear, mask again (reset unmasks nothing, but a pending cause may stay),
// then set link up with auto speed detection.
func (d *Device) reset() error {
	d.regs.Write32(IMC, 0xFFFFFFFF)
	d.regs.Write32(CTRL, d.regs.Read32(CTRL)|CtrlRST)
	deadline := time.Now().Add(100 * time.Millisecond)
	for d.regs.Read32(CTRL)&CtrlRST != 0 {
		if time.Now().After(deadline) {
			return errors.New("e1000: CTRL.RST did not clear within 100ms")
		}
		time.Sleep(10 * time.Microsecond)
	}
	d.regs.Write32(IMC, 0xFFFFFFFF)
	d.regs.Read32(ICR)
	ctrl := d.regs.Read32(CTRL)&^(CtrlLRST|CtrlPHYRST|CtrlVME) | CtrlSLU | CtrlASDE
	d.regs.Write32(CTRL, ctrl)
	return nil
}

// readMAC takes the address the EEPROM loaded into RAL0/RAH0 after reset
// (5.6.1); if it is not valid (RAH.AV clear) it reads EEPROM words 0-2
// through EERD and programs RAL0/RAH0 itself.
func (d *Device) readMAC() nic.MAC {
	var m nic.MAC
	lo, hi := d.regs.Read32(RAL0), d.regs.Read32(RAH0)
	if hi&(1<<31) == 0 {
		for i := 0; i < 3; i++ {
			w := d.eepromRead(uint8(i))
			m[2*i], m[2*i+1] = byte(w), byte(w>>8)
		}
		lo = binary.LittleEndian.Uint32(m[:4])
		hi = uint32(binary.LittleEndian.Uint16(m[4:])) | 1<<31
		d.regs.Write32(RAL0, lo)
		d.regs.Write32(RAH0, hi)
	}
	binary.LittleEndian.PutUint32(m[:4], lo)
	binary.LittleEndian.PutUint16(m[4:], uint16(hi))
	return m
}

// eepromRead reads one 16-bit EEPROM word through EERD (13.4.4).
func (d *Device) eepromRead(addr uint8) uint16 {
	d.regs.Write32(EERD, uint32(addr)<<EerdAddrShift|EerdStart)
	for i := 0; i < 100000; i++ {
		if v := d.regs.Read32(EERD); v&EerdDone != 0 {
			return uint16(v >> EerdDataShift)
		}
	}
	return 0xFFFF
}

func (d *Device) alloc() error {
	var err error
	if d.rxDesc, err = d.cfg.DMA.Alloc(uint64(d.cfg.RxRing*descSize), 128); err != nil {
		return fmt.Errorf("e1000: receive ring: %w", err)
	}
	if d.txDesc, err = d.cfg.DMA.Alloc(uint64(d.cfg.TxRing*descSize), 128); err != nil {
		return fmt.Errorf("e1000: transmit ring: %w", err)
	}
	if d.rxBufs, err = d.cfg.DMA.Alloc(uint64(d.cfg.RxRing*d.bufSize), 4096); err != nil {
		return fmt.Errorf("e1000: receive buffers: %w", err)
	}
	if d.txBufs, err = d.cfg.DMA.Alloc(uint64(d.cfg.TxRing*d.bufSize), 4096); err != nil {
		return fmt.Errorf("e1000: transmit buffers: %w", err)
	}
	return nil
}

func (d *Device) free() {
	for _, b := range []dma.Buffer{d.rxDesc, d.txDesc, d.rxBufs, d.txBufs} {
		if b.Mem != nil {
			d.cfg.DMA.Free(b)
		}
	}
}

// setupRx follows 14.4: receive address, multicast table cleared, ring
// base and length, head 0 and tail at the last descriptor (all but one
// owned by the device), then RCTL.
func (d *Device) setupRx() {
	for i := uint32(0); i < 128; i++ {
		d.regs.Write32(MTA+4*i, 0)
	}
	for i := 0; i < d.cfg.RxRing; i++ {
		desc := d.rxDesc.Mem[i*descSize:]
		binary.LittleEndian.PutUint64(desc[descAddr:], d.rxBufs.PA+uint64(i*d.bufSize))
	}
	d.regs.Write32(RDBAL, uint32(d.rxDesc.PA))
	d.regs.Write32(RDBAH, uint32(d.rxDesc.PA>>32))
	d.regs.Write32(RDLEN, uint32(d.cfg.RxRing*descSize))
	d.regs.Write32(RDTR, 0)
	d.regs.Write32(RDH, 0)
	d.regs.Write32(RDT, uint32(d.cfg.RxRing-1))
	d.regs.Write32(RCTL, RctlEN|RctlBAM|d.rctlBuf|RctlSECRC)
}

// setupTx follows 14.5.
func (d *Device) setupTx() {
	d.regs.Write32(TDBAL, uint32(d.txDesc.PA))
	d.regs.Write32(TDBAH, uint32(d.txDesc.PA>>32))
	d.regs.Write32(TDLEN, uint32(d.cfg.TxRing*descSize))
	d.regs.Write32(TDH, 0)
	d.regs.Write32(TDT, 0)
	d.regs.Write32(TIPG, tipg)
	d.regs.Write32(TCTL, TctlEN|TctlPSP|0x10<<TctlCTShift|0x40<<TctlCOLDShift)
}

// interrupts is the interrupt goroutine: each wake-up reads ICR (which
// clears the causes and lowers INTx), then services both rings whatever
// the causes say, so a cause coalesced into an earlier wake-up is never
// left behind.
func (d *Device) interrupts() {
	defer close(d.done)
	for {
		if _, err := d.cfg.IRQ.Wait(); err != nil || d.closed.Load() {
			return
		}
		if d.service() != 0 {
			d.stats.Interrupts.Add(1) // this device's (the line may be shared)
		}
	}
}

// Service handles whatever the device has done: received frames, finished
// transmissions, statistics. The interrupt goroutine and the watchdog
// call it.
func (d *Device) Service() { d.service() }

// service returns the interrupt causes it found (and cleared).
func (d *Device) service() uint32 {
	d.serviceMu.Lock()
	defer d.serviceMu.Unlock()
	if d.closed.Load() {
		return 0
	}
	icr := d.regs.Read32(ICR)
	if icr&IntLSC != 0 {
		d.readLink()
	}
	d.receive()
	d.reclaim()
	return icr
}

// readHWCounters accumulates the device's error statistics; frames the
// device itself dropped as bad count in RxErrors too. The watchdog calls
// it every period, and Counters and HW when asked, but not the interrupt
// path: five register reads per interrupt are five VM exits under an
// emulator (or a hypervisor), for figures nobody reads that often.
func (d *Device) readHWCounters() {
	d.hwMu.Lock()
	defer d.hwMu.Unlock()
	var v [len(d.hwRegs)]uint64
	for i := range d.hwRegs {
		if d.hwRegs[i].off == 0 {
			d.hwRegs[i].off = [...]uint32{CRCERRS, RXERRC, MPC, RUC, ROC}[i]
		}
		v[i] = d.hwRegs[i].read(d.regs)
	}
	crc, rxe, mpc, ruc, roc := v[0], v[1], v[2], v[3], v[4]
	d.hw.CRCErrors.Add(crc)
	d.hw.RxErrors.Add(rxe)
	d.hw.Missed.Add(mpc)
	d.hw.Undersize.Add(ruc)
	d.hw.Oversize.Add(roc)
	d.stats.RxErrors.Add(crc + ruc + roc)
}

// hwStat accumulates one statistics register. The 8254x clears them on
// read (13.7), but QEMU's e1000 keeps CRCERRS, RXERRC and MPC as running
// totals (its RUC and ROC do clear): adding each read of a running total
// counted the same missed frames again at every interrupt (hundreds of
// thousands "missed" in an FT session that lost a few dozen frames). So
// the first non-zero value is read a second time: a register that still
// holds at least that much keeps a running total, and from then on only
// its growth is counted.
type hwStat struct {
	off     uint32
	checked bool // the register's kind is known
	running bool // it holds a running total
	last    uint32
}

func (s *hwStat) read(r mmio.Space) uint64 {
	v := r.Read32(s.off)
	switch {
	case s.running:
		grown := v - s.last // modulo 2^32: the register wraps
		s.last = v
		return uint64(grown)
	case v == 0 || s.checked:
		return uint64(v)
	}
	s.checked = true
	again := r.Read32(s.off)
	if again >= v {
		s.running, s.last = true, again
		return uint64(again)
	}
	return uint64(v) + uint64(again) // cleared; again is what came between the reads
}

// receive takes every descriptor the device has written back (DD),
// queues good frames, counts bad ones, and returns the descriptors to the
// device by moving RDT (3.2.6).
func (d *Device) receive() {
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	last := -1
	for n := 0; n < d.cfg.RxRing; n++ {
		i := d.rxNext
		desc := d.rxDesc.Mem[i*descSize : (i+1)*descSize]
		status := atomicLoad8(&desc[rxStatus])
		if status&RxStatusDD == 0 {
			break
		}
		length := int(binary.LittleEndian.Uint16(desc[descLength:]))
		errs := desc[rxErrors]
		switch {
		case status&RxStatusEOP == 0:
			// A frame longer than one buffer, which holds the longest
			// frame of the MTU: a giant; drop every piece of it.
			if !d.rxDropping {
				d.stats.RxErrors.Add(1)
			}
			d.rxDropping = true
		case d.rxDropping:
			d.rxDropping = false
		case errs&rxFatal != 0, length < nic.HeaderLen, length > d.mtu+nic.HeaderLen:
			d.stats.RxErrors.Add(1)
		default:
			buf := d.rxBufs.Mem[i*d.bufSize : i*d.bufSize+length]
			d.rxq.Push(d.rxq.Copy(buf))
		}
		desc[rxStatus], desc[rxErrors] = 0, 0
		binary.LittleEndian.PutUint16(desc[descLength:], 0)
		last = i
		d.rxNext = (i + 1) % d.cfg.RxRing
	}
	if last >= 0 {
		d.regs.Write32(RDT, uint32(last))
	}
}

// reclaim frees transmit descriptors the device has written back and
// signals TxReady if a Transmit was refused meanwhile.
func (d *Device) reclaim() {
	d.txMu.Lock()
	freed := d.reclaimLocked()
	wake := freed > 0 && d.txFull
	if wake {
		d.txFull = false
	}
	d.txMu.Unlock()
	if wake {
		d.ready.Notify()
	}
}

func (d *Device) reclaimLocked() int {
	n := 0
	for d.txClean != d.txTail {
		desc := d.txDesc.Mem[d.txClean*descSize:]
		if atomicLoad8(&desc[txStatus])&TxStatusDD == 0 {
			break
		}
		desc[txStatus] = 0
		d.txClean = (d.txClean + 1) % d.cfg.TxRing
		n++
	}
	return n
}

// Transmit implements nic.NIC: the frame is copied into the next
// descriptor's buffer and TDT moves past it (3.3.6). One slot always
// stays empty, so TDT == TDH means empty.
func (d *Device) Transmit(frame []byte) error { return d.TransmitMore(frame, false) }

var _ nic.Batcher = (*Device)(nil)

// TransmitMore implements nic.Batcher: while more is true the frame's
// descriptor is filled but TDT is not written, so a burst costs one
// register write and the device takes its descriptors in one pass.
func (d *Device) TransmitMore(frame []byte, more bool) (err error) {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	if d.closed.Load() { // under txMu: Close frees the ring after taking it
		return nic.ErrClosed
	}
	defer func() {
		if (!more || err != nil) && d.txRung != d.txTail {
			d.regs.Write32(TDT, uint32(d.txTail))
			d.txRung = d.txTail
		}
	}()
	if err := nic.CheckFrame(frame, d.mtu); err != nil {
		return err
	}
	if !d.LinkUp() {
		return nic.ErrLinkDown
	}
	next := (d.txTail + 1) % d.cfg.TxRing
	if next == d.txClean {
		d.reclaimLocked()
		if next == d.txClean {
			d.txFull = true
			d.stats.TxQueueFull.Add(1)
			return nic.ErrQueueFull
		}
	}
	i := d.txTail
	copy(d.txBufs.Mem[i*d.bufSize:], frame)
	desc := d.txDesc.Mem[i*descSize : (i+1)*descSize]
	binary.LittleEndian.PutUint64(desc[descAddr:], d.txBufs.PA+uint64(i*d.bufSize))
	binary.LittleEndian.PutUint16(desc[descLength:], uint16(len(frame)))
	desc[txCmd] = TxCmdEOP | TxCmdIFCS | TxCmdRS
	desc[txStatus] = 0
	d.txTail = next
	d.stats.CountTx(len(frame))
	return nil
}

var _ nic.Segmenter = (*Device)(nil)

// maxIPv4Packet is the longest IPv4 packet (its total length field).
const maxIPv4Packet = 65535

// MaxSegment implements nic.Segmenter: an IPv4 packet of at most 64 KiB,
// no more than the ring can hold beside a context descriptor and one
// free slot.
func (d *Device) MaxSegment() int {
	return min(nic.HeaderLen+maxIPv4Packet, (d.cfg.TxRing-2)*d.bufSize)
}

// TransmitSegment implements nic.Segmenter with the 8254x's TCP
// segmentation (3.5): a TCP/IP context descriptor gives the headers'
// length, the MSS and where each checksum goes, and the packet follows in
// data descriptors of one buffer each. For every frame the device copies
// the headers, sets the IP total length, adds the frame's index to the IP
// ID and its offset to the TCP sequence number, leaves FIN and PSH to the
// last frame, and inserts both checksums: the IP one over a header whose
// checksum field is zero, the TCP one starting from the pseudo-header's
// sum without the length (3.5.1.3), which the driver writes into the
// field.
func (d *Device) TransmitSegment(packet []byte, mss int) error {
	if d.closed.Load() {
		return nic.ErrClosed
	}
	ihl, thl, err := tcpv4Headers(packet)
	if err != nil {
		return err
	}
	hdr := nic.HeaderLen + ihl + thl
	if len(packet) > d.MaxSegment() || mss < 1 || mss > d.mtu-ihl-thl {
		return fmt.Errorf("%w: segment of %d bytes, MSS %d (at most %d bytes, MSS %d)", nic.ErrFrameSize, len(packet), mss, d.MaxSegment(), d.mtu-ihl-thl)
	}
	if !d.LinkUp() {
		return nic.ErrLinkDown
	}
	d.txMu.Lock()
	defer d.txMu.Unlock()
	if d.closed.Load() {
		return nic.ErrClosed
	}
	defer func() {
		if d.txRung != d.txTail {
			d.regs.Write32(TDT, uint32(d.txTail))
			d.txRung = d.txTail
		}
	}()
	chunks := (len(packet) + d.bufSize - 1) / d.bufSize
	if d.freeSlots() < 1+chunks {
		d.reclaimLocked()
		if d.freeSlots() < 1+chunks {
			d.txFull = true
			d.stats.TxQueueFull.Add(1)
			return nic.ErrQueueFull
		}
	}
	ctx := d.txDesc.Mem[d.txTail*descSize : (d.txTail+1)*descSize]
	clear(ctx)
	ip := nic.HeaderLen
	ctx[ctxIPCSS], ctx[ctxIPCSO] = byte(ip), byte(ip+10)
	binary.LittleEndian.PutUint16(ctx[ctxIPCSE:], uint16(ip+ihl-1))
	ctx[ctxTUCSS], ctx[ctxTUCSO] = byte(ip+ihl), byte(ip+ihl+16)
	binary.LittleEndian.PutUint32(ctx[ctxPayLen:], uint32(len(packet)-hdr)) // DTYP 0: context
	ctx[txCmd] = TxCmdDEXT | TxCmdRS | TxCmdTSE | TxCtxIP | TxCtxTCP
	ctx[ctxHdrLen] = byte(hdr)
	binary.LittleEndian.PutUint16(ctx[ctxMSS:], uint16(mss))
	d.txTail = (d.txTail + 1) % d.cfg.TxRing

	first := d.txTail
	for off := 0; off < len(packet); off += d.bufSize {
		chunk := packet[off:min(off+d.bufSize, len(packet))]
		i := d.txTail
		buf := d.txBufs.Mem[i*d.bufSize:]
		copy(buf, chunk)
		if i == first {
			// The checksum fields the device fills: the IP one over a
			// zero field, the TCP one from the pseudo-header's sum.
			buf[ip+10], buf[ip+11] = 0, 0
			binary.BigEndian.PutUint16(buf[ip+ihl+16:], pseudoHeaderSum(packet[ip:]))
		}
		desc := d.txDesc.Mem[i*descSize : (i+1)*descSize]
		clear(desc)
		binary.LittleEndian.PutUint64(desc[descAddr:], d.txBufs.PA+uint64(i*d.bufSize))
		binary.LittleEndian.PutUint16(desc[descLength:], uint16(len(chunk)))
		desc[txDType] = txDTypData
		desc[txCmd] = TxCmdDEXT | TxCmdTSE | TxCmdIFCS | TxCmdRS
		if off+len(chunk) == len(packet) {
			desc[txCmd] |= TxCmdEOP
		}
		desc[txPopts] = TxPoptsIXSM | TxPoptsTXSM
		d.txTail = (d.txTail + 1) % d.cfg.TxRing
	}
	for payload := len(packet) - hdr; payload > 0; payload -= mss {
		d.stats.CountTx(hdr + min(payload, mss))
	}
	return nil
}

// freeSlots is how many descriptors can be filled before the ring is
// full (one slot always stays empty).
func (d *Device) freeSlots() int {
	return (d.txClean - d.txTail - 1 + d.cfg.TxRing) % d.cfg.TxRing
}

// tcpv4Headers returns the IPv4 and TCP header lengths of an Ethernet
// frame holding a TCP segment over IPv4 with some payload, or an error
// wrapping nic.ErrFrameSize.
func tcpv4Headers(p []byte) (ihl, thl int, err error) {
	const ipMin, tcpMin = 20, 20
	if len(p) < nic.HeaderLen+ipMin+tcpMin || binary.BigEndian.Uint16(p[12:]) != 0x0800 {
		return 0, 0, fmt.Errorf("%w: not an IPv4 packet", nic.ErrFrameSize)
	}
	ip := p[nic.HeaderLen:]
	ihl = int(ip[0]&0xf) * 4
	if ip[0]>>4 != 4 || ihl < ipMin || ip[9] != 6 || len(ip) < ihl+tcpMin {
		return 0, 0, fmt.Errorf("%w: not TCP over IPv4", nic.ErrFrameSize)
	}
	thl = int(ip[ihl+12]>>4) * 4
	if thl < tcpMin || len(ip) <= ihl+thl {
		return 0, 0, fmt.Errorf("%w: TCP header of %d bytes in a %d-byte IP packet", nic.ErrFrameSize, thl, len(ip))
	}
	return ihl, thl, nil
}

// pseudoHeaderSum is the ones' complement sum of an IPv4 packet's TCP
// pseudo-header without its length (RFC 9293 section 3.1): source,
// destination and protocol, folded, not complemented.
func pseudoHeaderSum(ip []byte) uint16 {
	sum := uint32(6) // the protocol
	for i := 12; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// Describe implements nic.Describer: the receive ring's head and tail
// (RDH, RDT) beside the driver's next descriptor and whether the device
// has written it back, the transmit ring's (TDH, TDT) beside the driver's
// oldest unreclaimed descriptor, the interrupt mask (IMS; ICR is not read,
// as reading clears it), the frames waiting for Receive and the device's
// missed-frame count.
func (d *Device) Describe() string {
	d.rxMu.Lock()
	next := d.rxNext
	dd := atomicLoad8(&d.rxDesc.Mem[next*descSize+rxStatus])&RxStatusDD != 0
	d.rxMu.Unlock()
	d.txMu.Lock()
	clean, tail, full := d.txClean, d.txTail, d.txFull
	d.txMu.Unlock()
	return fmt.Sprintf("rx RDH %d RDT %d next %d (done %v), tx TDH %d TDT %d clean %d tail %d (full %v), IMS %#x, STATUS %#x, queued %d, missed %d",
		d.regs.Read32(RDH), d.regs.Read32(RDT), next, dd, d.regs.Read32(TDH), d.regs.Read32(TDT), clean, tail, full,
		d.regs.Read32(IMS), d.regs.Read32(STATUS), d.rxq.Len(), d.HW().Missed.Load())
}

// Receive implements nic.NIC.
func (d *Device) Receive(ctx context.Context) ([]byte, error) { return d.rxq.Pop(ctx) }

var _ nic.Recycler = (*Device)(nil)

// Recycle implements nic.Recycler: the frame's buffer takes a later
// frame's copy.
func (d *Device) Recycle(frame []byte) { d.rxq.Recycle(frame) }

// Name implements nic.NIC.
func (d *Device) Name() string { return d.cfg.Name }

// MAC implements nic.NIC.
func (d *Device) MAC() nic.MAC { return d.mac }

// MTU implements nic.NIC.
func (d *Device) MTU() int { return d.mtu }

// LinkUp implements nic.NIC: STATUS.LU (13.4.2) as last read.
func (d *Device) LinkUp() bool { return d.linkUp.Load() }

// readLink reads STATUS.LU into linkUp.
func (d *Device) readLink() { d.linkUp.Store(d.regs.Read32(STATUS)&StatusLU != 0) }

// TxReady implements nic.NIC.
func (d *Device) TxReady() <-chan struct{} { return d.ready }

// Counters implements nic.NIC.
func (d *Device) Counters() nic.Counters {
	d.readHWCounters()
	return d.stats.Snapshot()
}

// HW returns the device's accumulated error statistics, read now.
func (d *Device) HW() *HWCounters {
	d.readHWCounters()
	return &d.hw
}

// Close stops the device: interrupts masked, receiver and transmitter
// off, the interrupt goroutine told to end. The DMA memory is freed only
// after a reset, so the device cannot write into reused memory.
func (d *Device) Close() error {
	if !d.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(d.stop)
	d.regs.Write32(IMC, 0xFFFFFFFF)
	d.regs.Write32(RCTL, 0)
	d.regs.Write32(TCTL, 0)
	d.regs.Write32(CTRL, d.regs.Read32(CTRL)|CtrlRST)
	d.cfg.IRQ.Close()
	d.rxq.Close()
	<-d.watchdog       // its pending reads the rings
	d.serviceMu.Lock() // the last service pass has ended; none starts now
	d.serviceMu.Unlock()
	d.txMu.Lock() // likewise the last transmit
	d.txMu.Unlock()
	d.free()
	return nil
}

var (
	_ nic.NIC       = (*Device)(nil)
	_ nic.Describer = (*Device)(nil)
)
