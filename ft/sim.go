package ft

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
	"github.com/doppel-ft/doppel/net/ethstream"
	"github.com/doppel-ft/doppel/net/mgmt"
	"github.com/doppel-ft/doppel/net/netstack"
	"github.com/doppel-ft/doppel/nic"
)

// SimPSK is the simulation's pre-shared key (wire.KeySize bytes).
var SimPSK = []byte("doppel-ft-sim-pre-shared-key-32b")

// DefaultPort is the FT link's session port (TCP); the simulation's
// baseline uses the next one and the ether transport's rendezvous the one
// after (EtherPort).
const DefaultPort = 7800

// Role is a node's part in the pair.
type Role string

const (
	RolePrimary   Role = "primary"
	RoleSecondary Role = "secondary"
)

// SimConfig configures a Sim.
type SimConfig struct {
	Role   Role
	Guest  simguest.Params
	Engine ftmirror.Config // PSK, Epoch, Heartbeat, ...; Generation is set by Sim
	Stack  *netstack.Stack
	Iface  *netstack.Interface // the FT NIC
	Peer   netip.Addr          // the primary's address (secondary only)
	Port   uint16              // default DefaultPort
	// Transport is the secondary's choice of byte stream (default TCP);
	// the primary serves both.
	Transport Transport
	// Kill is a kill point of the primary, "point[:epoch]" (ftsim's
	// -kill-primary-after points); at it OnKill is called from the engine.
	Kill   string
	OnKill func(p ftmirror.Point, epoch uint64)
	// ProbeBytes is the size of each baseline transfer (0: skip it). The
	// raw wire is probed rawProbes times and its median kept.
	ProbeBytes int64
	// After is how long a promoted secondary runs the guest before it
	// checks the output stream (default 300 ms).
	After time.Duration
	// Report is the interval of the primary's figure lines (default 2 s).
	Report time.Duration
	Out    io.Writer // console
}

// Sim runs ftmirror with its synthetic guest across the FT link.
type Sim struct {
	cfg      SimConfig
	Link     *Link
	syncWire wireCount
	Rec      *Recorder
	start    time.Time
	kill     killPoint

	mu        sync.Mutex
	role      string
	guest     string
	primary   *ftmirror.Primary
	secondary *ftmirror.Secondary
	session   net.Conn // the primary's current session's link, for its counters
	sink      *streamSink
	result    Result
}

// Result is what a finished secondary found (also printed).
type Result struct {
	RawMBps, TCPMBps float64
	EtherMBps        float64 // the ether stream's baseline (transport ether only)
	Promoted         bool
	Epoch            uint64
	FailoverMs       float64
	Verify           string // "ok" or "mismatch"
	Details          []string
	SessionEnd       string
}

type killPoint struct {
	point ftmirror.Point
	at    uint64
	set   bool
}

// inSync reports whether the point belongs to bringing a secondary up to
// date (the initial sync or a resync): it fires without waiting for an
// acknowledged epoch, which a resyncing node may not have seen yet.
func (k killPoint) inSync() bool {
	return k.point == ftmirror.PointSyncRound || k.point == ftmirror.PointBlackout || k.point == ftmirror.PointResync
}

// parseKill reads "point[:N]" as ftsim does: sync points default to
// round 1, others to epoch 3. A point outside the sync fires at its first
// occurrence in an epoch ≥ N once an epoch has been acknowledged (on a
// loaded machine the sync can still be in flight at epoch N).
func parseKill(s string) (killPoint, error) {
	if s == "" {
		return killPoint{}, nil
	}
	name, n, _ := strings.Cut(s, ":")
	k := killPoint{point: ftmirror.Point(name), at: 3, set: true}
	switch k.point {
	case ftmirror.PointSyncRound, ftmirror.PointBlackout, ftmirror.PointResync:
		k.at = 1
	case ftmirror.PointBegin, ftmirror.PointMidEpoch, ftmirror.PointPaused, ftmirror.PointMidGroup,
		ftmirror.PointBetweenGroups, ftmirror.PointBeforeEnd, ftmirror.PointAfterEnd, ftmirror.PointAcked,
		ftmirror.PointMidRelease, ftmirror.PointReleased:
	default:
		return killPoint{}, fmt.Errorf("ft: unknown kill point %q", name)
	}
	if n != "" {
		v, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			return killPoint{}, fmt.Errorf("ft: kill point %q: bad epoch %q", s, n)
		}
		k.at = v
	}
	return k, nil
}

// NewSim checks cfg and returns a Sim.
func NewSim(cfg SimConfig) (*Sim, error) {
	if cfg.Role != RolePrimary && cfg.Role != RoleSecondary {
		return nil, fmt.Errorf("ft: role %q: want primary or secondary", cfg.Role)
	}
	if cfg.Stack == nil || cfg.Iface == nil {
		return nil, errors.New("ft: no network stack or FT interface")
	}
	if cfg.Role == RoleSecondary && !cfg.Peer.IsValid() {
		return nil, errors.New("ft: the secondary needs the primary's address")
	}
	if cfg.Guest.Pages == 0 {
		return nil, errors.New("ft: guest has no memory")
	}
	k, err := parseKill(cfg.Kill)
	if err != nil {
		return nil, err
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.After == 0 {
		cfg.After = 300 * time.Millisecond
	}
	if cfg.Report == 0 {
		cfg.Report = 2 * time.Second
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Engine.PSK == nil {
		cfg.Engine.PSK = SimPSK
	}
	s := &Sim{cfg: cfg, kill: k, Rec: NewRecorder(8192), start: time.Now(),
		role: string(cfg.Role), guest: "starting"}
	s.Link = &Link{Retransmits: func() uint64 { return cfg.Stack.TCP().Retransmits }}
	return s, nil
}

func (s *Sim) printf(format string, a ...any) {
	fmt.Fprintf(s.cfg.Out, "ft: "+format+"\n", a...)
}

func (s *Sim) setGuest(state string) {
	s.mu.Lock()
	s.guest = state
	s.mu.Unlock()
}

// Result returns what the secondary found (zero on a primary).
func (s *Sim) Result() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.result
}

// Run runs the role until ctx is done (primary) or until the promoted
// secondary has verified (secondary).
func (s *Sim) Run(ctx context.Context) error {
	if s.cfg.Role == RolePrimary {
		return s.runPrimary(ctx)
	}
	return s.runSecondary(ctx)
}

func (s *Sim) addr(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(s.cfg.Iface.Config.Addr.Addr(), port)
}

// streamSink is the outside world of the simulation: it takes output only
// at the next stream offset (a gap or a duplicate is an error) and keeps
// the bytes for the final check.
type streamSink struct {
	mu   sync.Mutex
	next uint64
	base uint64
	data []byte
	keep bool
	errs []string
}

func (w *streamSink) Release(off uint64, b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if off != w.next {
		kind := "gap"
		if off < w.next {
			kind = "duplicate"
		}
		err := fmt.Errorf("ft: output %s: released offset %d, stream at %d", kind, off, w.next)
		w.errs = append(w.errs, err.Error())
		return err
	}
	w.next += uint64(len(b))
	if w.keep {
		w.data = append(w.data, b...)
	}
	return nil
}

func (w *streamSink) released() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

// Status implements mgmt.Source.
func (s *Sim) Status() mgmt.Status {
	ls := s.Link.Status()
	st := mgmt.Status{Role: s.role, Peer: ls.Peer, LinkState: string(ls.State), LinkTransport: ls.Transport, LinkTxMBps: ls.TxMBps,
		LinkRxMBps: ls.RxMBps, LinkTxBytes: ls.TxBytes, LinkRxBytes: ls.RxBytes, Retransmits: ls.Retransmits,
		Checkpoints: s.Rec.Total(), CheckpointRate: s.Rec.Rate(10 * time.Second),
		UptimeSeconds: time.Since(s.start).Seconds()}
	s.mu.Lock()
	p, sec, sink := s.primary, s.secondary, s.sink
	st.Role, st.GuestState = s.role, s.guest
	s.mu.Unlock()
	switch {
	case p != nil:
		st.Epoch = p.Epoch()
		sum := p.Stats.Summary()
		st.PauseP50ms, st.PauseP99ms, st.SyncSeconds = sum.PauseP50ms, sum.PauseP99ms, sum.SyncSeconds
	case sec != nil:
		st.Epoch, _ = sec.Committed()
	}
	if sink != nil {
		st.ReleasedBytes = sink.released()
	}
	return st
}

// Checkpoints implements mgmt.Source.
func (s *Sim) Checkpoints(since time.Time) []mgmt.Point { return s.Rec.Since(since) }

// printCounters prints the FT NIC's and TCP's counters after a phase, so a
// slow or stalled transfer shows where frames went (ring full, dropped,
// retransmitted).
func (s *Sim) printCounters(phase string, conn net.Conn) {
	n := s.cfg.Iface.NIC.Counters()
	l := s.cfg.Iface.Link.Stats()
	t := s.cfg.Stack.TCP()
	s.printf("%s counters: %s tx %d frames (ring full %d, waits %d, dropped %d), rx %d frames (dropped %d, errors %d), %d interrupts, %d stalls; tcp %d segments sent, %d received, %d retransmitted (%d fast), %d timeouts",
		phase, s.cfg.Iface.NIC.Name(), n.TxFrames, n.TxQueueFull, l.TxWaits, l.TxDropped, n.RxFrames, n.RxDropped, n.RxErrors,
		n.Interrupts, n.Stalls, t.SegmentsSent, t.SegmentsReceived, t.Retransmits, t.FastRetransmits, t.Timeouts)
	if d, ok := s.cfg.Iface.NIC.(nic.Describer); ok {
		s.printf("%s rings: %s", phase, d.Describe())
	}
	if line, ok := StreamCounters(conn); ok {
		s.printf("%s ether: %s", phase, line)
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	s.printf("%s gc: %d cycles, %v paused in all, %.1f MB allocated in all, heap %.1f MB",
		phase, m.NumGC, time.Duration(m.PauseTotalNs).Round(time.Microsecond), float64(m.TotalAlloc)/1e6, float64(m.HeapAlloc)/1e6)
}

// StreamCounters is a session's ether stream counters in one line, if
// the session runs on one.
func StreamCounters(c net.Conn) (string, bool) {
	es, ok := c.(*ethstream.Conn)
	if !ok {
		return "", false
	}
	x := es.Stats()
	return fmt.Sprintf("data frames %d sent, %d received; %d retransmitted (%d fast), %d timeouts (%d spurious), %d tail probes; %d acks sent, %d probes; %d duplicates, %d out of order, %d bad, %d refused by the NIC; %d window stalls, %d congestion window stalls (%v), cwnd %d, peer window %d, srtt %v, rto %v",
		x.DataFramesSent, x.DataFramesReceived, x.FastRetransmits+x.TimeoutRetransmits, x.FastRetransmits, x.Timeouts, x.SpuriousTimeouts, x.TailProbes,
		x.AcksSent, x.Probes, x.DuplicateFrames, x.OutOfOrder, x.BadFrames, x.SendErrors, x.WindowStalls, x.CwndStalls, x.CwndLimited.Round(time.Millisecond), x.Cwnd, x.PeerWindow,
		x.SRTT.Round(time.Microsecond), x.RTO.Round(time.Microsecond)), true
}

// hash is the verifier's view of memory.
func hash(b []byte) [32]byte { return sha256.Sum256(b) }
