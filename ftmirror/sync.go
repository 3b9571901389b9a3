package ftmirror

import "fmt"

// brownout is the initial sync (F2): every page is sent while the guest
// runs, then rounds of the pages dirtied meanwhile until a round is small
// or stops shrinking; the blackout is then an ordinary checkpoint that
// captures the last dirty pages and the state and marks the copy complete.
// Until it is acknowledged no output is released.
func (ps *pSession) brownout() error {
	p := ps.p
	if err := ps.begin(); err != nil {
		return err
	}
	var err error
	if ps.dirty, err = p.dirty.Harvest(ps.dirty[:0]); err != nil { // from here on, writes are tracked
		return fmt.Errorf("sync: harvest: %w", err)
	}
	n := p.mem.NumPages()
	all := make([]uint32, n)
	for i := range all {
		all[i] = uint32(i)
	}
	p.cfg.hook(PointSyncRound, 1)
	if err := ps.livePages(all, false); err != nil {
		return err
	}
	prev := n
	for round := 2; ; round++ {
		p.cfg.hook(PointSyncRound, uint64(round))
		if ps.dirty, err = p.dirty.Harvest(ps.dirty[:0]); err != nil {
			return fmt.Errorf("sync round %d: harvest: %w", round, err)
		}
		if err := ps.livePages(ps.dirty, false); err != nil {
			return err
		}
		d := len(ps.dirty)
		p.Stats.round(d)
		if d <= p.cfg.BrownoutTargetPages || d*10 >= prev*9 || round >= p.cfg.BrownoutMaxRounds {
			break
		}
		prev = d
	}
	// The blackout copies about the last round's pages while the guest is
	// paused: size the snapshot buffer for them now, while it runs (a
	// pre-faulted allocation of tens of MB took 0.5-1 s in the pause on
	// the loaded development machine).
	p.snap.grow(2 * len(ps.dirty))
	p.cfg.hook(PointBlackout, ps.open)
	// The per-checkpoint statistics cover the blackout only, not the
	// brownout rounds before it.
	ps.epochWire0, ps.epochDirty = ps.wireOut.Load(), 0
	return ps.checkpoint()
}

// resyncChunk sends the next ResyncPagesPerEpoch pages of memory, read while
// the guest runs, as part of the open epoch (F7). Pages below the cursor are
// then kept current by each checkpoint's dirty set; the epoch whose END
// finds the cursor at the end of memory marks the copy complete.
func (ps *pSession) resyncChunk() error {
	p := ps.p
	n := p.mem.NumPages()
	if ps.cursor == 0 {
		var err error
		if ps.dirty, err = p.dirty.Harvest(ps.dirty[:0]); err != nil { // track writes from here on
			return fmt.Errorf("resync: harvest: %w", err)
		}
	}
	hi := min(ps.cursor+p.cfg.ResyncPagesPerEpoch, n)
	ps.epochDirty += hi - ps.cursor // counted as raw bytes sent
	for pfn := ps.cursor; pfn < hi; pfn++ {
		copy(ps.scratch[:], p.mem.Page(uint32(pfn)))
		ps.cursor = pfn + 1 // before the send: a write from now on is harvested
		if err := ps.page(uint32(pfn), ps.scratch[:], false); err != nil {
			return err
		}
	}
	p.cfg.hook(PointResync, ps.open)
	if ps.cursor >= n {
		ps.resyncing = false // this epoch's END says complete
	}
	return nil
}
