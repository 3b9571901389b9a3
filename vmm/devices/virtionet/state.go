package virtionet

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

const (
	stateMagic = "VNET"
	// Version 2 added rxseq.
	stateVersion = 2
	maxPCIState  = 1 << 12
)

// Save implements devices.Snapshotter (format in the package doc).
func (d *Device) Save() ([]byte, error) {
	pciState, err := d.cfg.Save()
	if err != nil {
		return nil, fmt.Errorf("virtionet: configuration space: %w", err)
	}
	e := devices.NewEncoder(stateMagic, stateVersion)
	e.Bytes(pciState)
	e.U64(d.offered)
	e.U64(d.driver)
	e.U32(d.devSel)
	e.U32(d.drvSel)
	e.U8(d.status)
	e.U16(d.queueSel)
	e.U8(d.isr)
	e.U8(d.generation)
	for _, b := range d.mac {
		e.U8(b)
	}
	e.Bool(d.linkUp)
	e.Bytes(d.pciCfg[:])
	e.U8(numQueues)
	for i := range d.queues {
		d.queues[i].Save(e)
	}
	e.U64(d.txSeq)
	e.U64(d.rxSeq)
	for _, v := range d.stats.fields() {
		e.U64(*v)
	}
	e.U32(uint32(len(d.held)))
	for _, f := range d.held {
		e.Bytes(f)
	}
	return e.Finish(), nil
}

func (s *Stats) fields() []*uint64 {
	return []*uint64{&s.TxFrames, &s.RxFrames, &s.RxDroppedFull, &s.RxDroppedNotReady,
		&s.RxDroppedOversize, &s.RxDroppedSmall, &s.GuestErrors, &s.BadNotifies}
}

// Restore implements devices.Snapshotter. Everything is decoded and
// checked before anything changes, so a refused blob leaves the device
// as it was; the INTx level follows the restored ISR.
func (d *Device) Restore(state []byte) error {
	r := *d // the new state is built in a copy
	dec := devices.NewDecoder(state, stateMagic, stateVersion)
	pciState := dec.Bytes(maxPCIState)
	r.loadRegs(dec)
	nq := dec.U8()
	dec.Check(nq == numQueues, "%d queues, the device has %d", nq, numQueues)
	for i := range r.queues {
		r.queues[i] = d.queues[i].Load(dec)
	}
	r.txSeq = dec.U64()
	r.rxSeq = dec.U64()
	r.stats = Stats{}
	for _, v := range r.stats.fields() {
		*v = dec.U64()
	}
	r.held, r.heldBytes = nil, 0
	n := dec.U32()
	dec.Check(n <= uint32(d.maxHeld), "%d held frames, at most %d", n, d.maxHeld)
	for i := uint32(0); i < n && dec.Err() == nil; i++ {
		r.held = append(r.held, dec.Bytes(MaxFrameLen))
		r.heldBytes += len(r.held[i])
	}
	dec.Check(r.heldBytes <= d.maxBytes, "%d bytes of held frames, at most %d", r.heldBytes, d.maxBytes)
	if err := dec.Finish(); err != nil {
		return fmt.Errorf("virtionet: %w", err)
	}
	if err := d.cfg.Restore(pciState); err != nil {
		return fmt.Errorf("virtionet: configuration space: %w", err)
	}
	r.lastErr = nil
	*d = r
	d.cfg.SetINTx(d.isr != 0)
	return nil
}

// loadRegs decodes the fields from offered to pcicfg into d.
func (d *Device) loadRegs(dec *devices.Decoder) {
	offered := dec.U64()
	dec.Check(offered == d.offered, "features %#x, this device offers %#x", offered, d.offered)
	d.driver, d.devSel, d.drvSel = dec.U64(), dec.U32(), dec.U32()
	d.status, d.queueSel, d.isr, d.generation = dec.U8(), dec.U16(), dec.U8(), dec.U8()
	for i := range d.mac {
		d.mac[i] = dec.U8()
	}
	d.linkUp = dec.Bool()
	pc := dec.Bytes(pciCfgLen)
	dec.Check(len(pc) == pciCfgLen, "PCI access capability of %d bytes", len(pc))
	copy(d.pciCfg[:], pc)
	dec.Check(d.pciCfg[pciCfgBarOff+1]|d.pciCfg[pciCfgBarOff+2]|d.pciCfg[pciCfgBarOff+3] == 0, "PCI access capability id or padding set")
	dec.Check(d.status&^knownStatus == 0, "status %#x", d.status)
	dec.Check(d.isr&^(virtio.ISRQueue|virtio.ISRConfig) == 0, "ISR %#x", d.isr)
	if d.status&virtio.StatusFeaturesOK != 0 {
		dec.Check(d.featuresOK(), "FEATURES_OK with features %#x", d.driver)
	}
}
