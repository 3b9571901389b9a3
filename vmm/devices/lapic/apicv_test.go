package lapic

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// vidCPU models what the CPU does with virtual-interrupt delivery (SDM
// Vol. 3C 30.1.3 PPR virtualisation, 30.2.2 delivery, 30.1.4 EOI
// virtualisation) on a virtual-APIC page and the guest interrupt status.
type vidCPU struct {
	page     [4096]byte
	rvi, svi uint8
	eoiExit  [4]uint64
}

func (c *vidCPU) bit(base int, v uint8) bool {
	return binary.LittleEndian.Uint32(c.page[base+16*int(v>>5):])&(1<<(v&31)) != 0
}

func (c *vidCPU) set(base int, v uint8, on bool) {
	off := base + 16*int(v>>5)
	w := binary.LittleEndian.Uint32(c.page[off:])
	if on {
		w |= 1 << (v & 31)
	} else {
		w &^= 1 << (v & 31)
	}
	binary.LittleEndian.PutUint32(c.page[off:], w)
}

func (c *vidCPU) highest(base int) uint8 {
	for v := 255; v > 0; v-- {
		if c.bit(base, uint8(v)) {
			return uint8(v)
		}
	}
	return 0
}

func (c *vidCPU) vppr() uint8 {
	if vtpr := c.page[RegTPR]; vtpr>>4 >= c.svi>>4 {
		return vtpr
	}
	return c.svi & 0xF0
}

// deliver is the evaluation and delivery of a pending virtual interrupt.
func (c *vidCPU) deliver() (uint8, bool) {
	if c.rvi>>4 <= c.vppr()>>4 {
		return 0, false
	}
	v := c.rvi
	c.set(RegIRR, v, false)
	c.set(RegISR, v, true)
	c.svi, c.rvi = v, c.highest(RegIRR)
	return v, true
}

// eoi is the guest's EOI write; exit reports an EOI-induced VM exit.
func (c *vidCPU) eoi() (vector uint8, exit bool) {
	v := c.svi
	if v == 0 {
		return 0, false
	}
	c.set(RegISR, v, false)
	c.svi = c.highest(RegISR)
	return v, c.eoiExit[v/64]&(1<<(v%64)) != 0
}

// TestVirtualInterruptDelivery runs the same random interrupts and guest
// behaviour through the exit-based path on one LAPIC and through
// virtual-interrupt delivery on another: both must handle the same
// vectors, broadcast the same EOIs and end in the same state.
func TestVirtualInterruptDelivery(t *testing.T) {
	var takes, eois int
	defer func() { t.Logf("%d interrupts taken, %d level EOIs", takes, eois) }()
	for seed := int64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewSource(seed))
		a, _, _, ea := newTest(0)
		b, _, _, eb := newTest(0)
		enable(a)
		enable(b)
		var cpu vidCPU
		load := func() {
			st := b.LoadVirtualAPIC(&cpu.page)
			cpu.rvi, cpu.svi = uint8(st), uint8(st>>8)
			cpu.eoiExit = b.EOIExitBitmap()
		}
		var gotA, gotB []string
		defer func() { takes += len(gotA); eois += len(ea.vectors) }()
		for step := 0; step < 60; step++ {
			switch rng.Intn(3) {
			case 0: // interrupts arrive while the guest is out
				for n := rng.Intn(3); n >= 0; n-- {
					m := devices.Message{Vector: uint8(0x20 + rng.Intn(0xD0)), Level: rng.Intn(3) == 0}
					a.Deliver(m)
					b.Deliver(m)
				}
			default: // the guest runs a few actions
				load()
				for n := rng.Intn(6); n >= 0; n-- {
					switch k := rng.Intn(6); {
					case k == 5: // an IPI arrives: Wake kicks the guest out
						m := devices.Message{Vector: uint8(0x20 + rng.Intn(0xD0)), Level: rng.Intn(3) == 0}
						a.Deliver(m)
						b.Deliver(m)
						b.StoreVirtualAPIC(&cpu.page)
						load()
					case k < 2:
						if v, ok := a.PendingVector(); ok {
							a.Ack(v)
							gotA = append(gotA, fmt.Sprint("take ", v))
						}
						if v, ok := cpu.deliver(); ok {
							gotB = append(gotB, fmt.Sprint("take ", v))
						}
					case k < 4:
						wr(a, RegEOI, 0)
						if v, exit := cpu.eoi(); exit {
							b.StoreVirtualAPIC(&cpu.page)
							b.VirtualEOI(v)
							load()
						}
					default:
						tpr := uint8(rng.Intn(0x100)) & 0xF0
						wr(a, RegTPR, uint32(tpr))
						cpu.page[RegTPR] = tpr
					}
				}
				b.StoreVirtualAPIC(&cpu.page)
			}
			if fmt.Sprint(gotA) != fmt.Sprint(gotB) {
				t.Fatalf("seed %d step %d: exit path took %v, virtual delivery %v", seed, step, gotA, gotB)
			}
			if fmt.Sprint(ea.vectors) != fmt.Sprint(eb.vectors) {
				t.Fatalf("seed %d step %d: EOI broadcasts %v vs %v", seed, step, ea.vectors, eb.vectors)
			}
		}
		sa, _ := a.Save()
		sb, _ := b.Save()
		if !bytes.Equal(sa, sb) {
			t.Fatalf("seed %d: final states differ", seed)
		}
	}
}

// TestVirtualAPICAcceptsWhileRunning: a vector accepted while the guest
// runs survives StoreVirtualAPIC; an INIT makes the page stale.
func TestVirtualAPICAcceptsWhileRunning(t *testing.T) {
	l, _, _, _ := newTest(1)
	enable(l)
	l.Deliver(devices.Message{Vector: 0x30})
	var cpu vidCPU
	st := l.LoadVirtualAPIC(&cpu.page)
	cpu.rvi, cpu.svi = uint8(st), uint8(st>>8)
	if cpu.rvi != 0x30 || cpu.svi != 0 {
		t.Fatalf("guest interrupt status %#x", st)
	}
	l.Deliver(devices.Message{Vector: 0x50}) // from another thread
	if v, ok := cpu.deliver(); !ok || v != 0x30 {
		t.Fatalf("CPU delivered %#x %v", v, ok)
	}
	l.StoreVirtualAPIC(&cpu.page)
	if got := rd(l, RegISR+0x10); got != 1<<16 {
		t.Errorf("ISR[1] = %#x, want 0x30 in service", got)
	}
	if v, ok := l.PendingVector(); !ok || v != 0x50 {
		t.Errorf("0x50 accepted while running: pending %#x %v", v, ok)
	}
	l.LoadVirtualAPIC(&cpu.page)
	l.Deliver(devices.Message{Mode: devices.DeliveryINIT})
	l.StoreVirtualAPIC(&cpu.page)
	if got := rd(l, RegSVR); got != 0xFF {
		t.Errorf("SVR after INIT and a stale store = %#x", got)
	}
}
