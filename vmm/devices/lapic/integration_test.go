package lapic_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/ioapic"
	"github.com/doppel-ft/doppel/vmm/devices/lapic"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) Nanotime() int64 { return c.ns.Load() }

// board wires n LAPICs and one IOAPIC the way vmm.Machine does.
type board struct {
	router *lapic.Router
	io     *ioapic.IOAPIC
	cpus   []*lapic.LAPIC
	wakes  []atomic.Int32
}

// eoiFanout forwards EOIs to the IOAPIC, which is built after the LAPICs.
type eoiFanout struct{ b *board }

func (f eoiFanout) EOI(v uint8) { f.b.io.EOI(v) }

func newBoard(n int) *board {
	b := &board{router: lapic.NewRouter(), wakes: make([]atomic.Int32, n)}
	c := &clock{}
	for i := 0; i < n; i++ {
		i := i
		l := lapic.New(lapic.Config{
			ID: uint32(i), BSP: i == 0, Clock: c, TSCHz: 1e9,
			Sink: b.router, EOI: []devices.EOIListener{eoiFanout{b}},
			Wake: func() { b.wakes[i].Add(1) },
		})
		if err := l.WriteMSR(lapic.MSRAPICBase, lapic.DefaultBase|lapic.APICBaseEnable|lapic.APICBaseExtd); err != nil {
			panic(err)
		}
		if err := l.WriteMSR(0x80F, lapic.SVREnable|0xFF); err != nil {
			panic(err)
		}
		b.router.Add(l)
		b.cpus = append(b.cpus, l)
	}
	b.io = ioapic.New(0, b.router)
	return b
}

func (b *board) route(pin int, entry uint64) {
	for i, half := range []uint32{uint32(entry >> 32), uint32(entry)} {
		b.io.MMIOWrite(ioapic.IOREGSEL, le32(uint32(ioapic.IOREDTBL+2*pin+1-i)))
		b.io.MMIOWrite(ioapic.IOWIN, le32(half))
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// take injects and EOIs what cpu i has pending, as a vCPU loop would.
func (b *board) take(i int) (uint8, bool) {
	l := b.cpus[i]
	v, ok := l.PendingVector()
	if ok {
		l.Ack(v)
		if err := l.WriteMSR(0x80B, 0); err != nil {
			panic(err)
		}
	}
	return v, ok
}

// TestLevelInterruptEndToEnd: a level-triggered IOAPIC pin reaches the
// LAPIC, and is re-delivered after each EOI while the device holds it.
func TestLevelInterruptEndToEnd(t *testing.T) {
	b := newBoard(2)
	b.route(4, 1<<56|ioapic.EntryLevel|0x34) // to APIC 1
	uart := b.io.Pin(4)
	uart.Set(true)
	if b.wakes[1].Load() != 1 || b.wakes[0].Load() != 0 {
		t.Fatalf("wakes %d %d, want only APIC 1 woken", b.wakes[0].Load(), b.wakes[1].Load())
	}
	for round := 0; round < 3; round++ {
		if v, ok := b.take(1); !ok || v != 0x34 {
			t.Fatalf("round %d: APIC 1 pending %#x %v", round, v, ok)
		}
	}
	uart.Set(false)
	if v, ok := b.take(1); !ok || v != 0x34 {
		t.Fatalf("the delivery before the line fell: %#x %v", v, ok)
	}
	if v, ok := b.take(1); ok {
		t.Fatalf("pending %#x after the line fell and the last EOI", v)
	}
	if _, ok := b.take(0); ok {
		t.Fatal("APIC 0 got an interrupt routed to APIC 1")
	}
}

// TestConcurrentDevicesAndIPIs drives an IOAPIC pin from a device thread
// while vCPU threads take interrupts and send each other IPIs (-race).
func TestConcurrentDevicesAndIPIs(t *testing.T) {
	const n = 3
	b := newBoard(n)
	b.route(9, 0xFF<<56|ioapic.EntryLevel|uint64(devices.DeliveryLowestPriority)<<8|0x50)
	var stop atomic.Bool
	var device, wg sync.WaitGroup
	var level atomic.Int64
	device.Add(1)
	go func() {
		defer device.Done()
		for k := 0; k < 5000; k++ {
			b.io.Pin(9).Set(k%2 == 0)
		}
		b.io.Pin(9).Set(false)
	}()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for !stop.Load() {
				if err := b.cpus[i].WriteMSR(lapic.MSRx2APICICR, uint64((i+1)%n)<<32|0x60); err != nil {
					t.Error(err)
					return
				}
				if v, ok := b.take(i); ok && v == 0x50 {
					level.Add(1)
				}
			}
		}(i)
	}
	device.Wait()
	stop.Store(true)
	wg.Wait()
	for i := 0; i < n; i++ { // what arrived after a vCPU's last look
		for {
			v, ok := b.take(i)
			if !ok {
				break
			}
			if v == 0x50 {
				level.Add(1)
			}
		}
	}
	if level.Load() == 0 {
		t.Error("no vCPU took the level interrupt")
	}
}
