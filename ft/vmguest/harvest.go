package vmguest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
)

// round is one harvest request to every vCPU. Each vCPU, at its next exit
// (it is kicked), drains its own log into bm and waits at the exit until
// the requester releases it; if the requester scanned the shared tables
// meanwhile (scanned), the vCPU flushes its own translations before it
// enters the guest again and acknowledges. While every vCPU is held at the
// exit no guest code runs, so the scan races no guest write and no write
// can go through a translation cached before the clear.
type round struct {
	mu        sync.Mutex
	bm        *ept.Bitmap
	arrived   int
	errs      []error
	abandoned bool
	arrive    chan struct{} // one send per vCPU arriving
	release   chan struct{} // closed by the requester
	scanned   atomic.Bool
	flushed   chan error // one send per vCPU released after a scan
}

// cpuWrap is the vmm.CPU the Machine runs: the vendor CPU plus the
// answering of rounds, pending flushes and TSC offsets, all on the vCPU's
// own goroutine.
type cpuWrap struct {
	inner CPU
	v     *VM
	i     int
	own   *ept.Bitmap // scratch for HarvestOnCPU

	req      atomic.Pointer[round]
	flush    atomic.Bool // a scan ran while this vCPU was parked
	tscGen   uint64      // the offset generation applied
	answered *round
}

func (c *cpuWrap) Step() (vmm.Action, error) {
	answered, err := c.service()
	if err != nil {
		return vmm.ActionStop, err
	}
	if answered {
		// Back to the Machine's gate before entering the guest: a pause
		// that posted this round must find the vCPU parked with nothing
		// written since its drain.
		return vmm.ActionResume, nil
	}
	act, err := c.inner.Step()
	if err != nil {
		return act, err
	}
	// Answer at this exit: the vCPU is at an instruction boundary and
	// has not re-entered the guest.
	if _, err := c.service(); err != nil {
		return vmm.ActionStop, err
	}
	return act, nil
}

// service does, between two guest entries, what the VM asked of this
// vCPU; answered says it answered a harvest round.
func (c *cpuWrap) service() (answered bool, err error) {
	if r := c.req.Swap(nil); r != nil {
		answered = true
		if err := c.answer(r); err != nil {
			return true, err
		}
	}
	if c.flush.Swap(false) {
		if err := c.inner.FlushOnCPU(); err != nil {
			return answered, fmt.Errorf("vmguest: vcpu %d: flush: %w", c.i, err)
		}
	}
	if g := c.v.tscGen.Load(); g != c.tscGen {
		if err := c.inner.SetTSCOffset(c.v.tscOff.Load()); err != nil {
			return answered, fmt.Errorf("vmguest: vcpu %d: tsc offset: %w", c.i, err)
		}
		c.tscGen = g
	}
	return answered, nil
}

func (c *cpuWrap) answer(r *round) error {
	c.own.Reset()
	herr := c.inner.HarvestOnCPU(c.own)
	if herr != nil {
		herr = fmt.Errorf("vmguest: vcpu %d: harvest: %w", c.i, herr)
	}
	r.mu.Lock()
	if r.abandoned {
		// The requester gave up: keep the pages for the next harvest
		// rather than lose them (the log is already drained).
		r.mu.Unlock()
		c.v.carryMu.Lock()
		c.v.carry.Or(c.own)
		c.v.carryMu.Unlock()
		return nil
	}
	r.bm.Or(c.own)
	if herr != nil {
		r.errs = append(r.errs, herr)
	}
	r.arrived++
	r.mu.Unlock()
	r.arrive <- struct{}{}
	<-r.release
	if r.scanned.Load() {
		err := c.inner.FlushOnCPU()
		if err != nil {
			err = fmt.Errorf("vmguest: vcpu %d: flush: %w", c.i, err)
		}
		r.flushed <- err
	}
	return nil
}

func (c *cpuWrap) Kick()                  { c.inner.Kick() }
func (c *cpuWrap) Save() ([]byte, error)  { return c.inner.Save() }
func (c *cpuWrap) Restore(b []byte) error { return c.inner.Restore(b) }
func (c *cpuWrap) Close() error           { c.v.cpus[c.i].CompareAndSwap(c, nil); return c.inner.Close() }

// kickRetry is how often post kicks again the vCPUs that have not taken
// its round.
const kickRetry = time.Millisecond

// post asks every vCPU for a round and waits until all are held at an
// exit. On error (a vCPU missing or late) the round is abandoned: the
// caller must still call finish.
func (v *VM) post(r *round) error {
	n := len(v.cpus)
	r.arrive = make(chan struct{}, n)
	r.release = make(chan struct{})
	r.flushed = make(chan error, n)
	for i := range v.cpus {
		c := v.cpus[i].Load()
		if c == nil {
			v.abandon(r)
			return fmt.Errorf("%w: vcpu %d is not running", ErrUnanswered, i)
		}
		c.req.Store(r)
		c.inner.Kick()
	}
	deadline := time.After(v.cfg.HarvestTimeout)
	again := time.NewTicker(kickRetry)
	defer again.Stop()
	for got := 0; got < n; {
		select {
		case <-r.arrive:
			got++
		case <-again.C:
			// A kick can miss a vCPU that enters the guest just after
			// it (vmm.Machine.Pause kicks again for the same reason).
			for i := range v.cpus {
				if c := v.cpus[i].Load(); c != nil && c.req.Load() == r {
					c.inner.Kick()
				}
			}
		case <-v.M.Done():
			v.abandon(r)
			return fmt.Errorf("%w: the machine stopped", ErrUnanswered)
		case <-deadline:
			v.abandon(r)
			r.mu.Lock()
			a := r.arrived
			r.mu.Unlock()
			return fmt.Errorf("%w: %d of %d vCPUs within %v", ErrUnanswered, a, n, v.cfg.HarvestTimeout)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		return r.errs[0]
	}
	return nil
}

// abandon gives up a round: requests not yet taken are withdrawn, late
// answers go to carry, and pages already drained into the round are kept
// there too.
func (v *VM) abandon(r *round) {
	for i := range v.cpus {
		if c := v.cpus[i].Load(); c != nil {
			c.req.CompareAndSwap(r, nil)
		}
	}
	r.mu.Lock()
	r.abandoned = true
	v.carryMu.Lock()
	v.carry.Or(r.bm)
	v.carryMu.Unlock()
	r.bm.Reset()
	r.mu.Unlock()
}

// finish releases the held vCPUs and, after a scan, waits for each to
// flush: Harvest must not return before the clearing is effective on every
// CPU that ran the guest (ftmirror/interfaces.go).
func (v *VM) finish(r *round) error {
	close(r.release)
	if !r.scanned.Load() {
		return nil
	}
	deadline := time.After(v.cfg.HarvestTimeout)
	var first error
	for got := 0; got < len(v.cpus); got++ {
		select {
		case err := <-r.flushed:
			if err != nil && first == nil {
				first = err
			}
		case <-deadline:
			return fmt.Errorf("%w: flush not acknowledged by %d vCPUs", ErrUnanswered, len(v.cpus)-got)
		}
	}
	return first
}

// Harvest implements ftmirror.DirtySource (see the package doc for the
// protocol and why it honours the contract).
func (v *VM) Harvest(dst []uint32) ([]uint32, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	bm := v.scratch
	bm.Reset()
	if v.paused && v.pauseErr != nil {
		return dst, v.pauseErr
	}
	// Pages the vCPUs drained at the last pause (a pause need not be
	// followed by a harvest: Primary.RunAlone).
	bm.Or(v.pending)
	v.pending.Reset()
	if v.paused {
		// The vCPUs drained their logs at the exit where they parked;
		// the tables are scanned now and each vCPU flushes before its
		// next entry (no guest code runs in between, so a write through
		// a stale translation cannot happen).
		if v.cfg.Tables != nil {
			if err := v.cfg.Tables.Harvest(bm); err != nil {
				v.pending.Or(bm) // keep what was drained for a later harvest
				return dst, fmt.Errorf("vmguest: table scan: %w", err)
			}
			for i := range v.cpus {
				if c := v.cpus[i].Load(); c != nil {
					c.flush.Store(true)
				}
			}
		}
	} else {
		r := &round{bm: bm}
		if err := v.post(r); err != nil {
			v.finish(r)
			return dst, fmt.Errorf("vmguest: harvest: %w", err)
		}
		var serr error
		if v.cfg.Tables != nil {
			serr = v.cfg.Tables.Harvest(bm)
			r.scanned.Store(true)
		}
		if err := v.finish(r); err != nil {
			v.carryMu.Lock()
			v.carry.Or(bm)
			v.carryMu.Unlock()
			return dst, fmt.Errorf("vmguest: harvest: %w", err)
		}
		if serr != nil {
			v.carryMu.Lock()
			v.carry.Or(bm)
			v.carryMu.Unlock()
			return dst, fmt.Errorf("vmguest: table scan: %w", serr)
		}
	}
	v.carryMu.Lock()
	bm.Or(v.carry)
	v.carry.Reset()
	v.carryMu.Unlock()
	v.takeHost(bm)
	bm.ForEach(func(f uint64) bool { dst = append(dst, uint32(f)); return true })
	return dst, nil
}

// takeHost moves the host-written pages into bm.
func (v *VM) takeHost(bm *ept.Bitmap) {
	for i := range v.host {
		if atomic.LoadUint64(&v.host[i]) == 0 {
			continue
		}
		w := atomic.SwapUint64(&v.host[i], 0)
		for w != 0 {
			b := uint64(0)
			for w&(1<<b) == 0 {
				b++
			}
			bm.Set(uint64(i)*64 + b)
			w &^= 1 << b
		}
	}
}
