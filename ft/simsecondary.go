package ft

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
	"github.com/doppel-ft/doppel/net/ethstream"
	"github.com/doppel-ft/doppel/net/link"
)

// dialWait dials ap until it answers or ctx is done (the primary may boot
// later than the secondary).
func (s *Sim) dialWait(ctx context.Context, ap netip.AddrPort, t Transport) (net.Conn, error) {
	last := ""
	for {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := Dial(dctx, s.cfg.Stack, s.cfg.Iface, ap, t)
		cancel()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, ErrRendezvous) && err.Error() != last {
			last = err.Error() // a refusal says why; a primary not up yet is expected
			s.printf("dial %v: %v; retrying", ap, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ft: dial %v: %w (last: %v)", ap, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// baseline measures the wire: raw probe frames, then TCP.
func (s *Sim) baseline(ctx context.Context) (raw, tcp, ether float64, err error) {
	conn, err := s.dialWait(ctx, netip.AddrPortFrom(s.cfg.Peer, s.cfg.Port+1), TransportTCP)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	lk := s.cfg.Iface.Link
	lk.TakeProbe()
	mac := s.cfg.Iface.NIC.MAC()
	if _, err := conn.Write(mac[:]); err != nil {
		return 0, 0, 0, err
	}
	var probes [rawProbes]link.Probe
	var frames uint64
	for i := range probes {
		var n [8]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return 0, 0, 0, fmt.Errorf("probe count: %w", err)
		}
		time.Sleep(50 * time.Millisecond) // frames still in the rings
		probes[i] = lk.TakeProbe()
		frames += binary.LittleEndian.Uint64(n[:])
		if _, err := conn.Write([]byte{1}); err != nil {
			return 0, 0, 0, err
		}
	}
	// The median of the probes: one probe's rate swings by half on a
	// shared host, and every ratio to the raw wire divides by it.
	slices.SortFunc(probes[:], func(a, b link.Probe) int { return cmp.Compare(a.MBps(), b.MBps()) })
	pr := probes[rawProbes/2]
	var arrived uint64
	rates := make([]string, len(probes))
	for i, p := range probes {
		arrived += p.Frames
		rates[i] = fmt.Sprintf("%.1f", p.MBps())
	}
	s.printf("baseline: raw Ethernet %.1f MB/s (the median of %d probes of %s MB/s; %d of %d probe frames arrived)",
		pr.MBps(), rawProbes, strings.Join(rates, ", "), arrived, frames)
	buf := make([]byte, 64<<10)
	var got int64
	var start time.Time
	layer0, layerErr := board.LayerStats() // absent on a host
	sys0, _ := board.SyscallCounts()
	lock0, _ := board.LockStats()
	for got < s.cfg.ProbeBytes {
		k, err := conn.Read(buf)
		if got == 0 && k > 0 {
			start = time.Now() // from the first byte, as the probe is timed
		}
		got += int64(k)
		if err != nil {
			return pr.MBps(), 0, 0, fmt.Errorf("TCP baseline after %d bytes: %w", got, err)
		}
	}
	tcp = float64(got) / time.Since(start).Seconds() / 1e6
	layer1, _ := board.LayerStats()
	conn.Write([]byte{1})
	s.printf("baseline: TCP %.1f MB/s over %s", tcp, s.cfg.Iface.NIC.Name())
	if layerErr == nil && layer1 != nil {
		// The boot layer's events per MB received say what the stack's
		// bytes cost below Go (each takes the layer's lock).
		mb := float64(got) / 1e6
		per := func(k string) float64 { return float64(layer1[k]-layer0[k]) / mb }
		s.printf("baseline layer: per MB %.0f syscalls, %.0f context switches, %.0f irqs, %.0f ipis, %.0f timer ticks, %.0f lock-free polls, %.0f lock-free sleeps",
			per("syscalls"), per("context_switches"), per("irqs"), per("ipis"), per("timer_ticks"), per("lockfree_polls"), per("lockfree_sleeps"))
		sys1, _ := board.SyscallCounts()
		s.printf("baseline syscalls per MB (number: count): %s", syscallDelta(sys0, sys1, mb))
		if lock1, err := board.LockStats(); err == nil {
			s.printf("baseline lock: %s", lockDelta(lock0, lock1, mb))
		}
	}
	s.printCounters("baseline", nil)
	if s.cfg.Transport == TransportEther {
		if ether, err = s.etherBaseline(conn, buf); err != nil {
			s.printf("baseline: %v", err)
		}
	}
	return pr.MBps(), tcp, ether, nil
}

// etherBaseline receives ProbeBytes over an ether stream from the
// primary: the third figure beside the raw wire and TCP.
func (s *Sim) etherBaseline(conn net.Conn, buf []byte) (float64, error) {
	sid := newSession()
	if _, err := conn.Write(binary.BigEndian.AppendUint32(nil, sid)); err != nil {
		return 0, err
	}
	var peer [6]byte
	if _, err := io.ReadFull(conn, peer[:]); err != nil {
		return 0, fmt.Errorf("ether baseline: the primary's MAC: %w", err)
	}
	st, err := s.cfg.Iface.Stream.Open(ethstream.Config{Local: s.cfg.Iface.NIC.MAC(), Peer: peer, Session: sid})
	if err != nil {
		return 0, fmt.Errorf("ether baseline: %w", err)
	}
	defer st.Close()
	var got int64
	var start time.Time
	for got < s.cfg.ProbeBytes {
		k, err := st.Read(buf)
		if got == 0 && k > 0 {
			start = time.Now()
		}
		got += int64(k)
		if err != nil {
			return 0, fmt.Errorf("ether baseline after %d bytes: %w", got, err)
		}
	}
	mbps := float64(got) / time.Since(start).Seconds() / 1e6
	conn.Write([]byte{1})
	s.printf("baseline: ether stream %.1f MB/s over %s", mbps, s.cfg.Iface.NIC.Name())
	s.printCounters("ether baseline", st)
	return mbps, nil
}

// reportSync prints the link's counters once the initial copy is
// complete, the receiving side of what the primary's sync figures say,
// or not at all if done closes first.
func (s *Sim) reportSync(sec *ftmirror.Secondary, conn net.Conn, done <-chan struct{}) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if _, complete := sec.Committed(); complete {
			s.printCounters("sync", conn)
			return
		}
	}
}

// runSecondary mirrors the primary until it is lost, takes over, verifies
// and runs the guest for After as the new primary.
func (s *Sim) runSecondary(ctx context.Context) error {
	c := s.cfg
	res := Result{}
	defer func() {
		s.mu.Lock()
		s.result = res
		s.mu.Unlock()
	}()
	s.printf("secondary: guest %d MiB; primary at %v", c.Guest.Pages*simguest.PageSize>>20, netip.AddrPortFrom(c.Peer, c.Port))
	s.Link.Set(LinkConnecting, netip.AddrPortFrom(c.Peer, c.Port).String(), nil)
	if c.ProbeBytes > 0 {
		var err error
		if res.RawMBps, res.TCPMBps, res.EtherMBps, err = s.baseline(ctx); err != nil {
			s.printf("baseline: %v", err)
		}
	}
	g := simguest.NewBlank(c.Guest)
	cfg := c.Engine
	cfg.Alloc = simguest.Alloc
	sec := ftmirror.NewSecondary(cfg, g)
	s.mu.Lock()
	s.secondary, s.guest = sec, "mirroring"
	s.mu.Unlock()
	conn, err := s.dialWait(ctx, netip.AddrPortFrom(c.Peer, c.Port), c.Transport)
	if err != nil {
		return err
	}
	s.Link.Set(LinkUp, conn.RemoteAddr().String(), nil)
	s.printf("session with %v", conn.RemoteAddr())
	synced := make(chan struct{})
	go s.reportSync(sec, conn, synced)
	err = sec.Serve(s.Link.Wrap(conn))
	close(synced)
	res.SessionEnd = fmt.Sprint(err)
	s.Link.Set(LinkLost, "", err)
	e, _ := sec.Committed()
	s.printf("secondary's link session ended: %v (committed epoch %d)", err, e)
	s.printCounters("session", conn)
	time.Sleep(time.Until(sec.PromoteAt()))
	tk, err := sec.Takeover()
	if err != nil {
		s.printf("no takeover: %v", err)
		res.Verify = "mismatch"
		if errors.Is(err, ftmirror.ErrIncomplete) {
			// Nothing was protected yet (killed during the sync): the
			// right outcome is no takeover.
			res.Verify = "ok"
			res.Details = append(res.Details, "note: no takeover, as expected before the sync completed")
		}
		s.finish(&res)
		return nil
	}
	return s.promote(ctx, g, sec, tk, &res)
}

// promote restores the committed guest, verifies it, runs it as primary
// of the next generation with direct release for After, and verifies the output.
func (s *Sim) promote(ctx context.Context, g *simguest.Guest, sec *ftmirror.Secondary, tk ftmirror.Takeover, res *Result) error {
	c := s.cfg
	bad := func(f string, a ...any) { res.Details = append(res.Details, fmt.Sprintf(f, a...)) }
	if err := g.Restore(tk.Blobs); err != nil {
		bad("restore: %v", err)
		s.finish(res)
		return nil
	}
	lastHeard := sec.PromoteAt().Add(-c.Engine.Heartbeat.Deadline())
	res.Promoted, res.Epoch = true, tk.Epoch
	res.FailoverMs = float64(time.Since(lastHeard)) / 1e6
	ops := g.Ops()
	s.printf("takeover at epoch %d (%d guest ops), %.1f ms after the primary was last heard", tk.Epoch, ops, res.FailoverMs)
	// Verification only: not part of the failover time.
	if hash(g.Memory()) != hash(simguest.Replay(c.Guest, ops)) {
		bad("memory differs from the guest replayed to %d ops (epoch %d)", ops, tk.Epoch)
	}
	want := simguest.ExpectedOutput(c.Guest, ops)
	if uint64(len(want)) != tk.OutEnd {
		bad("committed output ends at %d, the guest at %d ops emitted %d bytes", tk.OutEnd, ops, len(want))
	} else if !bytes.Equal(tk.Out, want[tk.OutOffset:]) {
		bad("committed output [%d,%d) differs from the guest's", tk.OutOffset, tk.OutEnd)
	}
	// The world of this simulation has seen up to OutOffset (whatever the
	// old primary released after that is what the world would refuse).
	sink := &streamSink{next: tk.OutOffset, base: tk.OutOffset, keep: true}
	if err := sink.Release(tk.OutOffset, tk.Out); err != nil {
		bad("%v", err)
	}
	cfg := c.Engine
	cfg.Generation = tk.Generation
	cfg.Alloc = simguest.Alloc
	p := ftmirror.NewPrimary(cfg, g, g, &timedGuest{Guest: g, rec: s.Rec, link: s.Link}, sink)
	p.Continue(tk.Epoch, tk.OutEnd, true)
	g.Emit = p.Output
	s.mu.Lock()
	s.role, s.guest, s.primary, s.sink = "promoted", "running", p, sink
	s.mu.Unlock()
	stopG, stopP := make(chan struct{}), make(chan struct{})
	doneG, doneP := make(chan struct{}), make(chan struct{})
	go func() { g.Run(stopG); close(doneG) }()
	go func() { p.RunAlone(stopP); close(doneP) }()
	select {
	case <-time.After(c.After):
	case <-ctx.Done():
	}
	close(stopG)
	<-doneG
	close(stopP)
	<-doneP
	final := g.Ops()
	s.setGuest("stopped")
	sink.mu.Lock()
	got, errs := sink.data, sink.errs
	sink.mu.Unlock()
	for _, e := range errs {
		bad("%s", e)
	}
	if want := simguest.ExpectedOutput(c.Guest, final); uint64(len(want)) < tk.OutOffset || !bytes.Equal(got, want[tk.OutOffset:]) {
		bad("released output from %d (%d bytes) is not the guest's output after %d ops (%d bytes)", tk.OutOffset, len(got), final, len(want))
	}
	s.printf("promoted guest ran %v: %d more ops, output released to offset %d", c.After, final-ops, sink.released())
	s.finish(res)
	return nil
}

func (s *Sim) finish(res *Result) {
	ok := true
	for _, d := range res.Details {
		if len(d) < 6 || d[:6] != "note: " {
			ok = false
		}
	}
	if res.Verify == "" || !ok {
		res.Verify = "ok"
		if !ok {
			res.Verify = "mismatch"
		}
	}
	if res.Promoted {
		s.printf("failover: %.1f ms (takeover at epoch %d)", res.FailoverMs, res.Epoch)
	}
	fmt.Fprintf(s.cfg.Out, "verify: %s\n", res.Verify)
	for _, d := range res.Details {
		fmt.Fprintf(s.cfg.Out, "  %s\n", d)
	}
}

// syscallDelta gives the system-call counts (board.SyscallCounts) that
// grew between a and b, per mb, most frequent first; numbers under half a
// call per MB are summed as "others".
func syscallDelta(a, b map[string]uint64, mb float64) string {
	type count struct {
		nr  string
		per float64
	}
	var cs []count
	rare := 0.0 // calls of numbers under one per MB each
	for k, v := range b {
		d := v - a[k]
		if d == 0 || v < a[k] {
			continue
		}
		if per := float64(d) / mb; per >= 0.5 {
			cs = append(cs, count{k, per})
		} else {
			rare += per
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].per != cs[j].per {
			return cs[i].per > cs[j].per
		}
		return cs[i].nr < cs[j].nr
	})
	out := make([]string, 0, len(cs)+1)
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s: %.0f", c.nr, c.per))
	}
	if rare > 0 {
		out = append(out, fmt.Sprintf("others: %.1f", rare))
	}
	return strings.Join(out, ", ")
}

// lockDelta sums the big lock's hold and wait times between two readings
// (TSC ticks per MB) and names the holders that made others wait most.
func lockDelta(a, b []board.LockHolder, mb float64) string {
	before := map[string]board.LockHolder{}
	for _, h := range a {
		before[h.Holder] = h
	}
	var held, waited uint64
	var ds []board.LockHolder
	for _, h := range b {
		o := before[h.Holder]
		d := board.LockHolder{Holder: h.Holder, Count: h.Count - o.Count, Held: h.Held - o.Held, Waits: h.Waits - o.Waits, Waited: h.Waited - o.Waited}
		held, waited = held+d.Held, waited+d.Waited
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].Waited > ds[j].Waited })
	out := fmt.Sprintf("per MB held %.1f M TSC ticks, others spun %.1f M; most waited on:", float64(held)/mb/1e6, float64(waited)/mb/1e6)
	for i, d := range ds {
		if i == 4 || d.Waited == 0 {
			break
		}
		out += fmt.Sprintf(" %s (%.0f per MB, held %.1f M, spun %.1f M)", d.Holder, float64(d.Count)/mb, float64(d.Held)/mb/1e6, float64(d.Waited)/mb/1e6)
	}
	return out
}
