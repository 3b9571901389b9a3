package ft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
	"github.com/doppel-ft/doppel/net/ethstream"
)

// runPrimary serves the baseline once, then runs the guest and the engine,
// serving each secondary that connects until ctx is done.
func (s *Sim) runPrimary(ctx context.Context) error {
	c := s.cfg
	bl, err := c.Stack.Listen(s.addr(c.Port + 1))
	if err != nil {
		return err
	}
	l, err := Listen(c.Stack, c.Iface, s.addr(c.Port))
	if err != nil {
		bl.Close()
		return err
	}
	go func() { <-ctx.Done(); l.Close(); bl.Close() }()
	s.printf("primary: guest %d MiB, %.0f dirty pages/s, epoch %v; listening on %v",
		c.Guest.Pages*simguest.PageSize>>20, c.Guest.Rate, c.Engine.Epoch, s.addr(c.Port))
	s.Link.Set(LinkConnecting, "", nil)
	if c.ProbeBytes > 0 {
		if err := s.serveBaseline(bl); err != nil {
			s.printf("baseline: %v", err)
		}
	}
	g := simguest.New(c.Guest)
	sink := &streamSink{}
	cfg := c.Engine
	cfg.Generation = 1
	cfg.Alloc = simguest.Alloc
	if s.kill.set {
		cfg.ExactHooks = true
		cfg.SplitGroups = s.kill.point == ftmirror.PointMidGroup
	}
	var protected atomic.Bool // an epoch was acknowledged: the sync is done
	cfg.Hook = func(p ftmirror.Point, e uint64) {
		if p == ftmirror.PointAcked {
			protected.Store(true)
		}
		if s.kill.set && p == s.kill.point && e >= s.kill.at && (protected.Load() || s.kill.inSync()) {
			s.printf("kill point %s epoch %d: the primary stops here", p, e)
			s.Link.Set(LinkDown, "", fmt.Errorf("killed at %s %d", p, e))
			if c.OnKill != nil {
				c.OnKill(p, e)
			}
		}
		if p == ftmirror.PointAcked && e%100 == 0 {
			s.printf("acked epoch %d", e)
		}
	}
	tg := &timedGuest{Guest: g, rec: s.Rec, link: s.Link}
	p := ftmirror.NewPrimary(cfg, g, g, tg, sink)
	g.Emit = p.Output
	s.mu.Lock()
	s.primary, s.sink, s.guest = p, sink, "running"
	s.mu.Unlock()
	stop := make(chan struct{})
	go g.Run(stop)
	defer close(stop)
	go s.reportLoop(ctx, p, sink)
	for {
		conn, err := l.Accept()
		if err != nil {
			s.setGuest("stopped")
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ft: accept: %w", err)
		}
		s.Link.Set(LinkUp, conn.RemoteAddr().String(), nil)
		s.syncWire.start(s.Link.TxBytes())
		s.mu.Lock()
		s.session = conn
		s.mu.Unlock()
		s.printf("session with %v", conn.RemoteAddr())
		err = p.Serve(s.Link.Wrap(conn))
		s.Link.Set(LinkLost, "", err)
		s.printf("session ended: %v", err)
		s.printCounters("session", conn)
		if errors.Is(err, ftmirror.ErrFenced) {
			return err
		}
	}
}

// rawProbes is how many times the baseline probes the raw wire; the
// secondary keeps the median.
const rawProbes = 3

// serveBaseline answers one baseline connection: the peer's MAC in, then
// rawProbes times probe frames, the count sent and the peer's word that
// it counted them, then ProbeBytes over TCP.
func (s *Sim) serveBaseline(l net.Listener) error {
	conn, err := l.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	var mac [6]byte
	if _, err := io.ReadFull(conn, mac[:]); err != nil {
		return fmt.Errorf("peer MAC: %w", err)
	}
	frames := int(s.cfg.ProbeBytes / int64(s.cfg.Iface.NIC.MTU()+14))
	var ok [1]byte
	for i := 0; i < rawProbes; i++ {
		start := time.Now()
		sent, err := s.cfg.Iface.Link.SendProbe(tcpip.LinkAddress(mac[:]), frames)
		if err != nil {
			return err
		}
		s.printf("baseline: %d probe bytes handed to %s in %.3f s", sent, s.cfg.Iface.NIC.Name(), time.Since(start).Seconds())
		if _, err := conn.Write(binary.LittleEndian.AppendUint64(nil, uint64(frames))); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, ok[:]); err != nil { // the peer has counted the probe
			return err
		}
	}
	buf := make([]byte, 64<<10)
	for sent := int64(0); sent < s.cfg.ProbeBytes; sent += int64(len(buf)) {
		if _, err := conn.Write(buf); err != nil {
			return err
		}
	}
	_, err = io.ReadFull(conn, ok[:]) // the peer has read it all
	s.printCounters("baseline", nil)
	if err != nil {
		return err
	}
	return s.serveEtherBaseline(conn, mac)
}

// serveEtherBaseline sends ProbeBytes over an ether stream if the peer
// asks for one: a session number in (the peer closes the connection
// instead if it runs TCP), this end's MAC out, the bytes, and the peer's
// word that it read them all.
func (s *Sim) serveEtherBaseline(conn net.Conn, peer [6]byte) error {
	var sid [4]byte
	if _, err := io.ReadFull(conn, sid[:]); err != nil {
		return nil // no ether baseline asked for
	}
	mac := s.cfg.Iface.NIC.MAC()
	st, err := s.cfg.Iface.Stream.Open(ethstream.Config{Local: mac, Peer: peer, Session: binary.BigEndian.Uint32(sid[:])})
	if err != nil {
		return fmt.Errorf("ether baseline: %w", err)
	}
	defer st.Close()
	if _, err := conn.Write(mac[:]); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for sent := int64(0); sent < s.cfg.ProbeBytes; sent += int64(len(buf)) {
		if _, err := st.Write(buf); err != nil {
			return fmt.Errorf("ether baseline: %w", err)
		}
	}
	var ok [1]byte
	_, err = io.ReadFull(conn, ok[:])
	s.printCounters("ether baseline", st)
	return err
}

// reportLoop prints the sync figures once and the checkpoint figures
// every Report interval, in ftsim's words.
func (s *Sim) reportLoop(ctx context.Context, p *ftmirror.Primary, sink *streamSink) {
	// Until the sync is done, look every 10 ms, so the link bytes counted
	// for it stop within 10 ms of its end, and print its figures at once
	// (a kill point soon after it must not hide them).
	for poll := time.NewTicker(10 * time.Millisecond); ; {
		select {
		case <-ctx.Done():
			poll.Stop()
			return
		case <-poll.C:
		}
		if sum := p.Stats.Summary(); sum.SyncSeconds > 0 {
			s.syncWire.done(s.Link.TxBytes())
			poll.Stop()
			b, d := s.syncWire.get()
			s.printf("initial sync: %.3f s, %.1f MB/s, brownout rounds %v; %.1f MB on the wire in %.3f s (%.1f MB/s)",
				sum.SyncSeconds, float64(sum.SyncBytes)/sum.SyncSeconds/1e6, sum.BrownoutRounds,
				float64(b)/1e6, d.Seconds(), float64(b)/max(d.Seconds(), 1e-9)/1e6)
			s.mu.Lock()
			conn := s.session
			s.mu.Unlock()
			if conn != nil {
				s.printCounters("sync", conn) // how the link carried it
			}
			break
		}
	}
	t := time.NewTicker(s.cfg.Report)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sum := p.Stats.Summary()
		if sum.Checkpoints == 0 {
			continue
		}
		ls := s.Link.Status()
		s.printf("checkpoints: %d, pause p50 %.3f ms, p99 %.3f ms, max %.3f ms; epoch %d",
			sum.Checkpoints, sum.PauseP50ms, sum.PauseP99ms, sum.PauseMaxms, p.Epoch())
		s.printf("per checkpoint: %.0f bytes on the wire, %.0f dirty bytes (%.1f%%); link %.2f MB/s, %d retransmits",
			sum.WireBytesPerCkpt, sum.DirtyBytesPerCk, 100*sum.WireBytesPerCkpt/max(sum.DirtyBytesPerCk, 1), ls.TxMBps, ls.Retransmits)
		s.printf("output release latency: p50 %.2f ms, p99 %.2f ms (ack p99 %.2f ms), %d bytes released",
			sum.ReleaseP50ms, sum.ReleaseP99ms, sum.AckP99ms, sink.released())
	}
}

// wireCount measures the FT link's bytes and time from the start of a
// session to the end of its initial sync (the first complete epoch
// acknowledged):
// the sync's goodput on the wire. The engine's own sync rate counts the
// guest's size once, although a guest that dirties pages faster than the
// link carries them makes the sync send most pages more than once.
type wireCount struct {
	mu       sync.Mutex
	at       time.Time
	from     uint64
	bytes    uint64
	took     time.Duration
	finished bool
}

func (w *wireCount) start(tx uint64) {
	w.mu.Lock()
	w.at, w.from, w.finished = time.Now(), tx, false
	w.mu.Unlock()
}

func (w *wireCount) done(tx uint64) {
	w.mu.Lock()
	if !w.finished && !w.at.IsZero() {
		w.bytes, w.took, w.finished = tx-w.from, time.Since(w.at), true
	}
	w.mu.Unlock()
}

func (w *wireCount) get() (uint64, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bytes, w.took
}
