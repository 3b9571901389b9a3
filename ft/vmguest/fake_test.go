package vmguest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/uart"
	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
)

// The host fake of a vendor layer, in the pattern of vmm/machine_test.go's
// fakeCPU, but with the hazards the dirty-log contract is about modelled:
//
//   - dbit mode: one shared set of D bits (fakeMMU, the "EPT"), and per
//     vCPU a "TLB" of pages whose translation is cached with D already
//     set: a write through it sets no D bit, as on the hardware, until
//     FlushOnCPU. An adapter that scans without making every vCPU flush
//     before it writes again loses writes, and the tests see it.
//   - pml mode: each vCPU logs the pages it writes in a log only its own
//     goroutine touches (no lock), drained by HarvestOnCPU: a drain from
//     any other goroutine is a data race -race reports, and a vCPU left
//     out loses its pages.

// fakeHost is one host's TSC: base plus nanoseconds since t0.
type fakeHost struct {
	base uint64
	t0   time.Time
}

func (h *fakeHost) TSC() uint64 { return h.base + uint64(time.Since(h.t0)) }

// fakeMMU is the shared D bits; Harvest is the table scan.
type fakeMMU struct{ bits []uint64 }

func newMMU(pages int) *fakeMMU { return &fakeMMU{bits: make([]uint64, (pages+63)/64)} }

func (m *fakeMMU) Harvest(into *ept.Bitmap) error {
	for i := range m.bits {
		w := atomic.SwapUint64(&m.bits[i], 0)
		for b := uint64(0); w != 0; b++ {
			if w&(1<<b) != 0 {
				into.Set(uint64(i)*64 + b)
				w &^= 1 << b
			}
		}
	}
	return nil
}

// board is one side's devices; mu is the bus lock vCPUs take to touch
// them (Machine.SaveState touches them only with every vCPU parked).
type board struct {
	mu   sync.Mutex
	uart *uart.UART
	nic  *fakeNIC
}

// fakeNIC is the transmit side of a virtio-net device: a sequence number
// that is saved state, and a quiesce flag that is host state.
type fakeNIC struct {
	txSeq    uint64
	quiesced atomic.Bool
	backend  virtionet.Backend
}

func (n *fakeNIC) send(frame []byte) {
	n.txSeq++
	n.backend.Transmit(n.txSeq, frame)
}

func (n *fakeNIC) Quiesce(on bool) { n.quiesced.Store(on) }

func (n *fakeNIC) Save() ([]byte, error) {
	e := devices.NewEncoder("FNIC", 1)
	e.U64(n.txSeq)
	return e.Finish(), nil
}

func (n *fakeNIC) Restore(b []byte) error {
	d := devices.NewDecoder(b, "FNIC", 1)
	s := d.U64()
	if err := d.Finish(); err != nil {
		return err
	}
	n.txSeq = s
	return nil
}

type fakeOpts struct {
	pml   bool
	stuck chan struct{} // Step blocks until closed, ignoring kicks
	// deaf: Step leaves the guest only when kicked (a guest that makes
	// no exit of its own); the first lose kicks are lost, as a real one
	// is when the vCPU enters the guest just after it.
	deaf bool
	lose int32
}

type fakeCPU struct {
	i     int
	mem   vmm.GuestMemory
	pages int
	o     fakeOpts
	mmu   *fakeMMU
	b     *board
	host  *fakeHost
	kick  chan struct{}
	kicks atomic.Int32

	tlb map[uint32]bool
	log []uint32

	counter  uint64
	lastTSC  uint64
	tscOff   int64
	restored bool
	first    uint64 // the first TSC read after a restore
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

// storeGuest is a guest store. It is not instrumented by -race: on the
// hardware the guest's writes are not Go's, and the engine reads running
// guest memory by design (a page torn by a concurrent write was dirtied
// again and is re-sent), which -race would otherwise report.
//
//go:norace
func storeGuest(mem []byte, off int, v uint64) {
	p := (*[8]byte)(unsafe.Pointer(&mem[off]))
	for i := range p {
		p[i] = byte(v >> (8 * i))
	}
}

func (c *fakeCPU) write(pfn uint32, off int, v uint64) {
	storeGuest(c.mem, int(pfn)*PageSize+off, v)
	if c.tlb[pfn] {
		return // cached with D set: the hardware sets nothing
	}
	c.tlb[pfn] = true
	if c.o.pml {
		c.log = append(c.log, pfn)
	} else {
		atomic.OrUint64(&c.mmu.bits[pfn/64], 1<<(pfn%64))
	}
}

func (c *fakeCPU) Step() (vmm.Action, error) {
	if c.o.stuck != nil {
		<-c.o.stuck
	}
	for n := 0; n < 16; n++ {
		c.counter++
		pfn := uint32(mix(uint64(c.i)<<48|c.counter) % uint64(c.pages))
		// Each vCPU writes its own words of a page (disjoint lanes), so
		// the fake guest has no data race of its own.
		off := (c.i*64 + int(c.counter%8)*8) % PageSize
		c.write(pfn, off, c.counter<<8|uint64(c.i))
		tsc := c.host.TSC() + uint64(c.tscOff)
		if c.restored && c.first == 0 {
			c.first = tsc
		}
		if tsc < c.lastTSC {
			return vmm.ActionStop, fmt.Errorf("fake vcpu %d: TSC went backwards from %d to %d", c.i, c.lastTSC, tsc)
		}
		c.lastTSC = tsc
		if c.counter%16 == 0 {
			c.b.mu.Lock()
			for _, ch := range fmt.Appendf(nil, "c%d:%d\n", c.i, c.counter) {
				c.b.uart.PortOut(0, 1, uint32(ch))
			}
			c.b.mu.Unlock()
		}
		if c.counter%48 == 0 {
			c.b.mu.Lock()
			c.b.nic.send(fmt.Appendf(nil, "frame from %d at %d", c.i, c.counter))
			c.b.mu.Unlock()
		}
		select {
		case <-c.kick:
			return vmm.ActionResume, nil
		default:
		}
	}
	if c.o.deaf {
		<-c.kick
		return vmm.ActionResume, nil
	}
	select {
	case <-c.kick:
	case <-time.After(50 * time.Microsecond):
	}
	return vmm.ActionResume, nil
}

func (c *fakeCPU) Kick() {
	if c.kicks.Add(1) <= c.o.lose {
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *fakeCPU) HarvestOnCPU(into *ept.Bitmap) error {
	if !c.o.pml {
		return nil
	}
	for _, p := range c.log {
		into.Set(uint64(p))
	}
	c.log = c.log[:0]
	clear(c.tlb) // PML re-arms on the next write of each page
	return nil
}

func (c *fakeCPU) FlushOnCPU() error { clear(c.tlb); return nil }

func (c *fakeCPU) SetTSCOffset(off int64) error { c.tscOff = off; return nil }

func (c *fakeCPU) Save() ([]byte, error) {
	e := devices.NewEncoder("FCPU", 1)
	e.U64(c.counter)
	e.U64(c.lastTSC)
	return e.Finish(), nil
}

func (c *fakeCPU) Restore(b []byte) error {
	d := devices.NewDecoder(b, "FCPU", 1)
	n, t := d.U64(), d.U64()
	if err := d.Finish(); err != nil {
		return err
	}
	c.counter, c.lastTSC, c.restored = n, t, true
	return nil
}

func (c *fakeCPU) Close() error { return nil }

// side is one server: a VM over the fake, its devices, its host.
type side struct {
	v    *VM
	b    *board
	host *fakeHost
	mu   sync.Mutex
	cpus []*fakeCPU
}

func newSide(ncpu, pages int, o fakeOpts, host *fakeHost, timeout time.Duration) (*side, error) {
	s := &side{b: &board{}, host: host, cpus: make([]*fakeCPU, ncpu)}
	mem := make(vmm.GuestMemory, pages*PageSize)
	var mmu *fakeMMU
	var tables ept.DirtySource
	if !o.pml {
		mmu = newMMU(pages)
		tables = mmu
	}
	v, err := New(Config{CPUs: ncpu, Memory: mem, Tables: tables, HostTSC: host.TSC, HarvestTimeout: timeout,
		NewCPU: func(i int) (CPU, error) {
			c := &fakeCPU{i: i, mem: mem, pages: pages, o: o, mmu: mmu, b: s.b, host: host,
				kick: make(chan struct{}, 1), tlb: map[uint32]bool{}}
			s.mu.Lock()
			s.cpus[i] = c
			s.mu.Unlock()
			return c, nil
		}})
	if err != nil {
		return nil, err
	}
	s.v = v
	s.b.uart = uart.New(v.Out, devices.NoLine)
	s.b.nic = &fakeNIC{backend: v.Out}
	if err := v.AddDevice("uart0", s.b.uart); err != nil {
		return nil, err
	}
	if err := v.AddDevice("net0", s.b.nic); err != nil {
		return nil, err
	}
	v.AddQuiescer(s.b.nic)
	return s, nil
}
