package ftmirror

import (
	"fmt"

	"github.com/doppel-ft/doppel/ftmirror/pagediff"
	"github.com/doppel-ft/doppel/ftmirror/wire"
)

// deltaMax is the largest delta sent instead of a full page.
const deltaMax = PageSize / 2

// maxOutPerEnd bounds the output one END carries. Output held while there
// was no secondary can exceed a frame; it then follows over several
// epochs, and the secondary reports itself incomplete until it has all of
// it (a variable so tests can make it small).
var maxOutPerEnd = wire.MaxPayload / 2

// begin opens the next epoch on the secondary (F3's notification). It
// carries the output offset released so far, so the secondary can drop
// output it no longer needs to keep for a takeover.
func (ps *pSession) begin() error {
	p := ps.p
	p.mu.Lock()
	ps.open = p.epoch + 1
	p.mu.Unlock()
	ps.groups, ps.records = 0, 0
	ps.epochWire0, ps.epochDirty = ps.wireOut.Load(), 0
	if ps.gbuf == nil {
		if err := ps.startGroup(); err != nil {
			return err
		}
	} else {
		ps.g.Reset(wire.Start(ps.gbuf[:0]), 0) // the open group is empty
	}
	if err := ps.send(wire.TBegin, ps.open, wire.AppendU64(nil, p.out.releasedThrough())); err != nil {
		return err
	}
	ps.exactHook(PointBegin, ps.open)
	return nil
}

// checkpoint captures the open epoch with the guest paused only for the
// capture (dirty set, a copy of the dirty pages, state, output seal), then
// streams it in groups while the guest runs again, and opens the next epoch.
func (ps *pSession) checkpoint() error {
	p := ps.p
	e := ps.open
	clock := p.cfg.Clock
	// The pause counts from the request to stop: the time a VM takes to
	// bring its vCPUs to an exit (and what it does there) is host time
	// the checkpoint costs, even if the guest ran for part of it.
	tStop := clock.Now()
	p.guest.Pause()
	t0 := clock.Now() // the guest is stopped from here
	var err error
	if ps.dirty, err = p.dirty.Harvest(ps.dirty[:0]); err != nil {
		p.guest.Resume()
		return fmt.Errorf("checkpoint %d: harvest: %w", e, err)
	}
	if ps.resyncing {
		ps.dirty = keepBelow(ps.dirty, uint32(ps.cursor)) // the rest goes in later chunks
	}
	t1 := clock.Now()
	if p.snap.grow(len(ps.dirty)) > 0 { // normally grown beforehand, below
		p.Stats.snapGrownInPause()
	}
	for i, pfn := range ps.dirty {
		copy(p.snap.page(i), p.mem.Page(pfn))
	}
	t2 := clock.Now()
	ps.blobs = p.guest.SaveState(ps.blobs[:0])
	p.out.seal(e)
	p.mu.Lock()
	p.epoch = e
	p.mu.Unlock()
	p.cfg.hook(PointPaused, e)
	p.guest.Resume()
	pause := clock.Now().Sub(tStop)
	ps.releaseUnprotected(e)

	ps.epochDirty += len(ps.dirty)
	for i, pfn := range ps.dirty {
		if err := ps.page(pfn, p.snap.page(i), true); err != nil {
			return err
		}
	}
	if err := ps.end(e); err != nil {
		return err
	}
	// Grow the snapshot now, while the guest runs, if this checkpoint used
	// more than half of it: allocating (and, in the simulator, pre-faulting)
	// memory inside the next pause would stop the guest for as long as that
	// takes (676 ms once for 90 MB on a loaded host).
	p.snap.grow(2 * len(ps.dirty))
	p.Stats.checkpoint(clock.Now(), pause, ps.wireOut.Load()-ps.epochWire0, int64(ps.epochDirty)*PageSize)
	p.Stats.pauseParts(t0.Sub(tStop), t1.Sub(t0), t2.Sub(t1), pause-t2.Sub(tStop))
	return ps.begin()
}

func keepBelow(pfns []uint32, limit uint32) []uint32 {
	out := pfns[:0]
	for _, pfn := range pfns {
		if pfn < limit {
			out = append(out, pfn)
		}
	}
	return out
}

// forward sends the pages dirtied so far while the guest keeps running
// (F6). A page written again after its harvest is harvested again, so the
// checkpoint corrects any torn copy sent here.
func (ps *pSession) forward() error {
	var err error
	if ps.dirty, err = ps.p.dirty.Harvest(ps.dirty[:0]); err != nil {
		return fmt.Errorf("forward in epoch %d: harvest: %w", ps.open, err)
	}
	if ps.resyncing {
		ps.dirty = keepBelow(ps.dirty, uint32(ps.cursor))
	}
	ps.epochDirty += len(ps.dirty)
	return ps.livePages(ps.dirty, true)
}

// livePages sends pages read from running guest memory.
func (ps *pSession) livePages(pfns []uint32, keep bool) error {
	for _, pfn := range pfns {
		if !keep && ps.p.state[pfn] == pageZero {
			if err := ps.firstPage(pfn); err != nil {
				return err
			}
			continue
		}
		copy(ps.scratch[:], ps.p.mem.Page(pfn))
		if err := ps.page(pfn, ps.scratch[:], keep); err != nil {
			return err
		}
	}
	return nil
}

// firstPage sends a page the secondary has as zero, copying it from guest
// memory straight into the group (the sync's first round: one copy a page).
func (ps *pSession) firstPage(pfn uint32) error {
	slot := ps.g.Full(pfn)
	copy(slot, ps.p.mem.Page(pfn))
	if pagediff.IsZero(slot) { // tested on the copy, which cannot change
		ps.g.DropFull()
		return nil
	}
	ps.p.state[pfn] = pageSent
	ps.records++
	if len(ps.g.Buf) >= ps.p.cfg.GroupBytes {
		return ps.flush()
	}
	return nil
}

// Page states on the primary, per session.
const (
	pageZero = iota // the secondary's page is zero (nothing sent)
	pageSent        // the secondary holds what was last sent
)

// shadowed returns the shadow slot holding pfn's last sent contents, or nil.
// The shadow is a direct-mapped cache of ShadowBytes (all of memory by
// default): pfn lives in slot pfn mod slots, tagged with pfn+1.
func (p *Primary) shadowed(pfn uint32) []byte {
	slot := int(pfn) % len(p.tags)
	if p.tags[slot] != pfn+1 {
		return nil
	}
	return p.shadow[slot*PageSize : (slot+1)*PageSize]
}

// page encodes one page against the shadow of what the secondary holds:
// nothing if unchanged, a zero record, a delta of the changed words, or the
// full page. src must not change during the call. With keep false (the
// sync's rounds) the shadow is not updated: the sync then touches no more
// memory than the guest's own, and the first resend of a page is full.
func (ps *pSession) page(pfn uint32, src []byte, keep bool) error {
	p := ps.p
	switch {
	case p.state[pfn] == pageZero:
		if pagediff.IsZero(src) {
			return nil
		}
		copy(ps.g.Full(pfn), src)
		p.state[pfn] = pageSent
	case pagediff.IsZero(src):
		ps.g.Zero(pfn)
		p.state[pfn] = pageZero
		keep = false
	default:
		sh := p.shadowed(pfn)
		if sh == nil {
			copy(ps.g.Full(pfn), src)
			break
		}
		d := ps.diff.Size(sh, src)
		if d == 0 {
			return nil
		}
		if d <= deltaMax {
			ps.g.Delta(pfn, func(b []byte) []byte { return ps.diff.Append(b, src) })
		} else {
			copy(ps.g.Full(pfn), src)
		}
	}
	if keep {
		slot := int(pfn) % len(p.tags)
		p.tags[slot] = pfn + 1
		copy(p.shadow[slot*PageSize:(slot+1)*PageSize], src)
	} else if sh := p.shadowed(pfn); sh != nil {
		p.tags[int(pfn)%len(p.tags)] = 0 // stale now
	}
	ps.records++
	if len(ps.g.Buf) >= p.cfg.GroupBytes {
		return ps.flush()
	}
	return nil
}

// exactHook calls the hook at a point that describes the wire, after
// draining the link if Config.ExactHooks is set.
func (ps *pSession) exactHook(pt Point, e uint64) {
	if ps.p.cfg.Hook == nil {
		return
	}
	if ps.p.cfg.ExactHooks {
		ps.drain()
	}
	ps.p.cfg.hook(pt, e)
}

// groupBuffers is how many GROUP frames may be encoded ahead of the wire.
const groupBuffers = 3

// startGroup begins a group in a free buffer, waiting for the writer to
// return one if all are queued.
func (ps *pSession) startGroup() error {
	if ps.free == nil {
		ps.free = make(chan []byte, groupBuffers)
		for i := 0; i < groupBuffers; i++ {
			ps.free <- make([]byte, 0, ps.p.cfg.GroupBytes+2*PageSize+wire.Overhead)
		}
	}
	select {
	case ps.gbuf = <-ps.free:
	case <-ps.done:
		return ps.err
	}
	ps.g.Reset(wire.Start(ps.gbuf[:0]), ps.groups)
	return nil
}

// flush sends the group under construction, if it has records.
func (ps *pSession) flush() error {
	if ps.g.Count() == 0 {
		return nil
	}
	p := ps.p
	ps.g.Finish()
	var split func()
	if p.cfg.SplitGroups && p.cfg.Hook != nil {
		e := ps.open
		split = func() { p.cfg.hook(PointMidGroup, e) }
	}
	buf, t := ps.compress(ps.g.Buf)
	if err := ps.writeFrame(buf, t, ps.open, split, func() { ps.free <- buf[:0] }); err != nil {
		return err
	}
	if ps.groups == 0 {
		ps.exactHook(PointBetweenGroups, ps.open)
	}
	ps.groups++
	return ps.startGroup()
}

// Compression pays when it saves at least 1/zMinSaving of a group; after
// a group where it did not, the next zbackoff groups (doubling up to
// zMaxSkip) go without trying, so incompressible memory costs little CPU.
// A group of at least 2*zProbeBytes is first tried in its first
// zProbeBytes (a page or a run of deltas): only if that part pays is the
// whole group compressed. Incompressible groups then cost a sixteenth of
// a 64 KiB group's compression; a compressible one a sixteenth more.
const (
	zMinSaving  = 8
	zMaxSkip    = 8
	zProbeBytes = 4096
)

// compress compresses the finished group in buf if that pays (doc.go,
// "Bytes on the wire"), rewriting buf in place as a GROUPZ frame (the
// compressed payload is smaller, so it fits), and returns the frame and
// its type.
func (ps *pSession) compress(buf []byte) ([]byte, wire.Type) {
	p := ps.p
	raw := buf[wire.HeaderSize:]
	if p.zc == nil || ps.zskip > 0 {
		ps.zskip = max(ps.zskip-1, 0)
		p.Stats.group(len(raw), len(raw), false, false)
		return buf, wire.TGroup
	}
	pays := func(in []byte) bool {
		ps.zbuf = p.zc.AppendGroupZ(ps.zbuf[:0], in)
		return len(ps.zbuf) <= len(in)-len(in)/zMinSaving
	}
	if len(raw) >= 2*zProbeBytes && !pays(raw[:zProbeBytes]) || !pays(raw) {
		ps.zbackoff = min(2*ps.zbackoff+1, zMaxSkip)
		ps.zskip = ps.zbackoff
		p.Stats.group(len(raw), len(raw), true, false)
		return buf, wire.TGroup
	}
	ps.zbackoff = 0
	p.Stats.group(len(raw), len(ps.zbuf), true, true)
	return append(buf[:wire.HeaderSize], ps.zbuf...), wire.TGroupZ
}

// end flushes the last group and sends END, which commits the epoch on the
// secondary.
//
// END carries every sealed output byte this secondary has not been sent yet:
// normally the epoch's own output, but in a session's first epoch also
// output held from before the session, so a takeover never leaves a gap.
func (ps *pSession) end(e uint64) error {
	p := ps.p
	if err := ps.flush(); err != nil {
		return err
	}
	if r := p.out.releasedThrough(); r > ps.outSent {
		ps.outSent = r
	}
	off := ps.outSent
	out, outEnd := p.out.since(off)
	if len(out) > maxOutPerEnd {
		out = out[:maxOutPerEnd] // the rest follows in later ENDs
	}
	ps.outSent = off + uint64(len(out))
	ps.exactHook(PointBeforeEnd, e)
	end := wire.End{Groups: ps.groups, Pages: ps.records, OutOffset: off, OutEnd: outEnd, Out: out, Blobs: ps.blobs}
	if !ps.resyncing {
		end.Flags |= wire.EndComplete
		ps.completeSent = true
	}
	ps.mu.Lock()
	ps.endSent[e] = p.cfg.Clock.Now()
	ps.mu.Unlock()
	if err := ps.send(wire.TEnd, e, end.Append(nil)); err != nil {
		return err
	}
	ps.exactHook(PointAfterEnd, e)
	return nil
}
