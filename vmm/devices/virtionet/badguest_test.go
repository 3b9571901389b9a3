package virtionet

import (
	"errors"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

// A faulty guest: each case breaks the rings after init and sends a
// frame or posts a buffer; the device must refuse with
// DEVICE_NEEDS_RESET, count it, interrupt, and work again after reset.
func TestBadGuest(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		do         func(g *guest)
	}{
		{"descriptor loop", "a loop", func(g *guest) {
			g.putDesc(txRing, 0, txBufs, 20, virtio.DescFNext, 1)
			g.putDesc(txRing, 1, txBufs, 20, virtio.DescFNext, 0)
			g.makeAvail(txRing, &g.txIdx, 0)
			g.notify(TxQueue)
		}},
		{"self loop on receive", "a loop", func(g *guest) {
			g.putDesc(rxRing, 3, rxBufs, 20, virtio.DescFNext|virtio.DescFWrite, 3)
			g.makeAvail(rxRing, &g.rxIdx, 3)
			g.dev.Receive(frame(60, 1))
			g.notify(RxQueue)
		}},
		{"next index beyond the queue", "descriptor index 16", func(g *guest) {
			g.putDesc(txRing, 0, txBufs, 20, virtio.DescFNext, qsize)
			g.makeAvail(txRing, &g.txIdx, 0)
			g.notify(TxQueue)
		}},
		{"head index beyond the queue", "descriptor index 999", func(g *guest) {
			g.makeAvail(txRing, &g.txIdx, 999)
			g.notify(TxQueue)
		}},
		{"buffer outside RAM", "out of range", func(g *guest) {
			g.putDesc(txRing, 0, memSize-4, 64, 0, 0)
			g.makeAvail(txRing, &g.txIdx, 0)
			g.notify(TxQueue)
		}},
		{"buffer wrapping the address space", "wraps", func(g *guest) {
			g.putDesc(txRing, 0, ^uint64(0)-8, 64, 0, 0)
			g.makeAvail(txRing, &g.txIdx, 0)
			g.notify(TxQueue)
		}},
		{"oversize transmit chain", "over 65547 bytes", func(g *guest) {
			g.putDesc(txRing, 0, 0, maxTxChain+1, 0, 0)
			g.makeAvail(txRing, &g.txIdx, 0)
			g.notify(TxQueue)
		}},
		{"oversize chain of many descriptors", "over 65547 bytes", func(g *guest) {
			for i := uint16(0); i < qsize; i++ {
				g.putDesc(txRing, i, 0, 8000, virtio.DescFNext, i+1)
			}
			g.putDesc(txRing, qsize-1, 0, 8000, 0, 0)
			g.makeAvail(txRing, &g.txIdx, 0)
			g.notify(TxQueue)
		}},
		{"indirect descriptor", "indirect", func(g *guest) {
			g.putDesc(txRing, 0, txBufs, 32, virtio.DescFIndirect, 0)
			g.makeAvail(txRing, &g.txIdx, 0)
			g.notify(TxQueue)
		}},
		{"transmit shorter than the header", "shorter than the header", func(g *guest) {
			g.putDesc(txRing, 0, txBufs, NetHdrLen-1, 0, 0)
			g.makeAvail(txRing, &g.txIdx, 0)
			g.notify(TxQueue)
		}},
		{"readable receive buffer", "device-readable", func(g *guest) {
			g.putDesc(rxRing, 0, rxBufs, 2048, 0, 0)
			g.makeAvail(rxRing, &g.rxIdx, 0)
			g.dev.Receive(frame(60, 1))
		}},
		{"receive buffer outside RAM", "out of range", func(g *guest) {
			g.putDesc(rxRing, 0, memSize-10, 2048, virtio.DescFWrite, 0)
			g.makeAvail(rxRing, &g.rxIdx, 0)
			g.dev.Receive(frame(60, 1))
		}},
		{"available index far ahead", "entries past", func(g *guest) {
			g.put16(txRing+0x102, qsize+1)
			g.notify(TxQueue)
		}},
		{"ring outside RAM", "out of range", func(g *guest) {
			g.setStatus(0)
			g.negotiate(baseFeatures)
			g.w(virtio.CommonQueueSelect, 2, TxQueue)
			g.w(virtio.CommonQueueSize, 2, qsize)
			g.w(virtio.CommonQueueDriver, 8, memSize+0x1000)
			g.w(virtio.CommonQueueEnable, 2, 1)
			g.setStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK)
			g.notify(TxQueue)
		}},
		{"misaligned ring", "misaligned", func(g *guest) {
			g.setStatus(0)
			g.negotiate(baseFeatures)
			g.w(virtio.CommonQueueDesc, 8, txRing+8)
			g.w(virtio.CommonQueueEnable, 2, 1)
		}},
		{"queue size not a power of two", "queue size 12", func(g *guest) {
			g.setStatus(0)
			g.negotiate(baseFeatures)
			g.w(virtio.CommonQueueSize, 2, 12)
			g.w(virtio.CommonQueueEnable, 2, 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGuest(t, Options{})
			g.init(baseFeatures)
			tc.do(g)
			if g.status()&virtio.StatusDeviceNeedsReset == 0 || g.dev.Stats().GuestErrors != 1 {
				t.Fatalf("not refused: %v", g)
			}
			if err := g.dev.Err(); !errors.Is(err, virtio.ErrGuest) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v: does not wrap ErrGuest or say %q", err, tc.want)
			}
			if g.status()&virtio.StatusDriverOK != 0 && g.readISR()&virtio.ISRConfig == 0 {
				t.Error("no configuration change interrupt")
			}
			// Stopped: nothing more is processed until reset.
			n := len(g.sent)
			g.send(frame(60, 1))
			if len(g.sent) != n {
				t.Error("transmitted in DEVICE_NEEDS_RESET")
			}
			g.init(baseFeatures)
			g.send(frame(60, 2))
			g.postRx(1, 2048)
			g.dev.Receive(frame(70, 3))
			if got, _ := g.received(); len(g.sent) != n+1 || len(got) != 1 || g.status()&virtio.StatusDeviceNeedsReset != 0 {
				t.Errorf("not working after reset: sent %d, received %d, %v", len(g.sent)-n, len(got), g)
			}
		})
	}
}

func TestNotifyDisabledQueue(t *testing.T) {
	g := newGuest(t, Options{})
	g.negotiate(baseFeatures)
	g.notify(TxQueue)
	g.notify(7)
	g.w(NotifyOffset+1, 1, 0)
	if g.dev.Stats().BadNotifies != 3 || g.status()&virtio.StatusDeviceNeedsReset != 0 {
		t.Errorf("%v", g)
	}
}

func TestDriverCannotSetNeedsReset(t *testing.T) {
	// The driver cannot set DEVICE_NEEDS_RESET itself, nor clear it.
	g := newGuest(t, Options{})
	g.setStatus(virtio.StatusAcknowledge | virtio.StatusDeviceNeedsReset)
	if g.status() != virtio.StatusAcknowledge {
		t.Errorf("status %#x", g.status())
	}
}
