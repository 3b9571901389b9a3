package virtionet

import (
	"encoding/binary"
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

// notify handles the driver's notification of queue q (4.1.4.4).
func (d *Device) notify(q uint64) {
	if q >= numQueues || !d.queues[q].Enabled {
		d.stats.BadNotifies++
		return
	}
	if !d.live() {
		return // looked at again by kick when the device becomes live
	}
	if q == TxQueue {
		d.transmit()
	} else {
		d.deliver()
	}
}

// kick processes both queues: after DRIVER_OK or Bus Master is set, the
// driver may have posted buffers while the device could not use them.
func (d *Device) kick() {
	if d.queues[TxQueue].Enabled {
		d.transmit()
	}
	d.deliver()
}

// transmit sends every chain available on the transmit queue (5.1.6.2):
// a 12-byte header then the frame, in device-readable buffers. Each
// chain is returned with 0 bytes written. At most a queue's worth of
// chains is taken, so the work per notification is bounded.
func (d *Device) transmit() {
	q := &d.queues[TxQueue]
	if !d.live() || !q.Enabled {
		return
	}
	n, err := q.Avail(d.mem)
	used := 0
	for i := 0; err == nil && i < int(n); i++ {
		err = d.transmitOne(q)
		if err == nil {
			used++
		}
	}
	if used > 0 {
		if perr := q.Publish(d.mem); perr != nil && err == nil {
			err = perr
		}
		if !q.NoInterrupt(d.mem) {
			d.raise(virtio.ISRQueue)
		}
	}
	if err != nil {
		d.guestError(fmt.Errorf("virtionet: transmit queue: %w", err))
	}
}

func (d *Device) transmitOne(q *virtio.Queue) error {
	c := d.chain(0)
	if err := q.Pop(d.mem, maxTxChain, c); err != nil {
		return err
	}
	if c.ReadLen < NetHdrLen {
		return fmt.Errorf("%w: transmit chain of %d bytes, shorter than the header", virtio.ErrGuest, c.ReadLen)
	}
	buf, err := virtio.Gather(d.mem, c, d.buf[:0])
	d.buf = buf
	if err != nil {
		return err
	}
	if err := q.PutUsed(d.mem, c.Head, 0); err != nil {
		return err
	}
	frame := append([]byte(nil), buf[NetHdrLen:]...)
	d.txSeq++
	d.stats.TxFrames++
	d.backend.Transmit(d.txSeq, frame)
	return nil
}

// chain returns scratch chain i.
func (d *Device) chain(i int) *virtio.Chain {
	for len(d.chains) <= i {
		d.chains = append(d.chains, virtio.Chain{})
	}
	return &d.chains[i]
}

// Receive gives the device a frame from the host network. It is held
// (copied) and delivered when the receive queue has buffers and the
// device is not quiesced. It reports false when the frame was dropped:
// over MaxFrameLen, no driver ready for it, or MaxHeld frames (or
// MaxHeldBytes) already held. An accepted frame takes the next receive
// sequence number (RxSeq).
func (d *Device) Receive(frame []byte) bool {
	switch {
	case len(frame) > MaxFrameLen:
		d.stats.RxDroppedOversize++
		return false
	case d.status&virtio.StatusDriverOK == 0:
		d.stats.RxDroppedNotReady++
		return false
	case len(d.held) >= d.maxHeld || d.heldBytes+len(frame) > d.maxBytes:
		d.stats.RxDroppedFull++
		return false
	}
	d.held = append(d.held, append([]byte(nil), frame...))
	d.heldBytes += len(frame)
	d.rxSeq++
	d.deliver()
	return true
}

// Quiesce starts (on) or ends a checkpoint's network quiesce (F5):
// while on, no frame is delivered to the guest, so its driver sees no
// received packets, and frames from Receive are held. Ending it delivers
// the held frames in order, as buffers allow.
func (d *Device) Quiesce(on bool) {
	d.quiesced = on
	if !on {
		d.deliver()
	}
}

// Quiesced reports whether the device is quiesced.
func (d *Device) Quiesced() bool { return d.quiesced }

// deliver moves held frames into the receive queue, in order, while
// chains are available.
func (d *Device) deliver() {
	q := &d.queues[RxQueue]
	if !d.live() || !q.Enabled || d.quiesced || len(d.held) == 0 {
		return
	}
	delivered := false
	var err error
	for len(d.held) > 0 {
		var n uint16
		if n, err = q.Avail(d.mem); err != nil || n == 0 {
			break
		}
		var r rxResult
		if r, err = d.deliverOne(q, n, d.held[0]); err != nil || r == rxWait {
			break
		}
		delivered = delivered || r == rxDelivered
		d.heldBytes -= len(d.held[0])
		d.held[0] = nil
		d.held = d.held[1:]
	}
	if len(d.held) == 0 {
		d.held = nil // let the backing array go
	}
	if delivered {
		if perr := q.Publish(d.mem); perr != nil && err == nil {
			err = perr
		}
		if !q.NoInterrupt(d.mem) {
			d.raise(virtio.ISRQueue)
		}
	}
	if err != nil {
		d.guestError(fmt.Errorf("virtionet: receive queue: %w", err))
	}
}

// rxResult is what became of a held frame.
type rxResult int

const (
	rxDelivered rxResult = iota
	rxDropped            // the guest's buffers can never hold it
	rxWait               // more buffers are needed
)

// deliverOne writes frame into the next chain(s) of the n available:
// one chain without MRG_RXBUF, as many as it takes with it (5.1.6.3,
// 5.1.6.4).
func (d *Device) deliverOne(q *virtio.Queue, n uint16, frame []byte) (rxResult, error) {
	need := uint64(NetHdrLen + len(frame))
	merge := d.negotiated(FMrgRxBuf)
	taken, have, err := d.takeChains(q, n, need, merge)
	if err != nil {
		return rxWait, err
	}
	if have < need {
		q.LastAvail -= uint16(taken) // not taken after all
		if !merge || n == q.Size {
			// One chain is all it may use, or the whole ring is too
			// small: this frame can never be delivered.
			d.stats.RxDroppedSmall++
			return rxDropped, nil
		}
		return rxWait, nil
	}
	d.buf = append(d.buf[:0], make([]byte, NetHdrLen)...)
	binary.LittleEndian.PutUint16(d.buf[hdrNumBuffersOff:], uint16(taken))
	d.buf = append(d.buf, frame...)
	rest := d.buf
	for i := 0; i < taken; i++ {
		c := d.chain(i)
		w, err := virtio.Scatter(d.mem, c, rest)
		if err != nil {
			return rxWait, err
		}
		rest = rest[w:]
		if err := q.PutUsed(d.mem, c.Head, uint32(w)); err != nil {
			return rxWait, err
		}
	}
	d.stats.RxFrames++
	return rxDelivered, nil
}

// takeChains pops receive chains into the scratch chains until they hold
// need bytes, one chain only unless merging; it returns how many it took
// and their capacity.
func (d *Device) takeChains(q *virtio.Queue, n uint16, need uint64, merge bool) (int, uint64, error) {
	var have uint64
	taken := 0
	for have < need && taken < int(n) && (merge || taken == 0) {
		c := d.chain(taken)
		if err := q.Pop(d.mem, maxRxChain, c); err != nil {
			return taken, have, err
		}
		taken++
		if c.ReadLen != 0 {
			return taken, have, fmt.Errorf("%w: device-readable buffer in receive chain %d", virtio.ErrGuest, c.Head)
		}
		if taken == 1 && c.WriteLen < NetHdrLen {
			return taken, have, fmt.Errorf("%w: receive chain %d of %d bytes, shorter than the header", virtio.ErrGuest, c.Head, c.WriteLen)
		}
		have += c.WriteLen
	}
	return taken, have, nil
}
