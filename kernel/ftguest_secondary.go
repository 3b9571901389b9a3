package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ft"
	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/ftmirror"
)

// The secondary side of the protected guest: the auto rule, mirroring,
// and the takeover.

// roleAuto pairs two identical machines (ftmirror/doc.go, "Roles at
// boot").
const roleAuto ft.Role = "auto"

// electWait is how long an auto node looks for a running primary before
// the address rule decides.
const electWait = 10 * time.Second

// elect applies the auto rule: join the peer as secondary if it already
// serves as primary; else the node with the lower FT-link address becomes
// primary and the other keeps dialling as secondary. It returns the
// connection to the primary when it found one.
func (n *ftNode) elect() (ft.Role, net.Conn, error) {
	peer, err := netip.ParseAddr(n.k.flags.String(flagFTPeer))
	if err != nil {
		return "", nil, fmt.Errorf("doppel.ft.role=auto needs doppel.ft.peer: %w", err)
	}
	me := n.ifc.Config.Addr.Addr()
	if me == peer {
		return "", nil, fmt.Errorf("doppel.ft.peer=%v is this node's own address", peer)
	}
	ap := netip.AddrPortFrom(peer, ft.DefaultPort)
	for end := time.Now().Add(electWait); time.Now().Before(end); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := n.dialOnce(ctx, ap)
		cancel()
		if err == nil {
			n.k.log.Printf("ft", "auto: %v serves as primary: this node is the secondary", peer)
			return ft.RoleSecondary, c, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	role := autoRole(me, peer)
	if role == ft.RolePrimary {
		n.k.log.Printf("ft", "auto: no primary at %v; %v < %v: this node is the primary", peer, me, peer)
	} else {
		n.k.log.Printf("ft", "auto: no primary at %v yet; %v > %v: this node is the secondary", peer, me, peer)
	}
	return role, nil, nil
}

// autoRole is the auto rule once no running primary answered: the lower
// FT-link address is the primary.
func autoRole(me, peer netip.Addr) ft.Role {
	if me.Less(peer) {
		return ft.RolePrimary
	}
	return ft.RoleSecondary
}

// dialOnce opens a session to the primary at ap over the transport of
// doppel.ft.transport.
func (n *ftNode) dialOnce(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	return ft.Dial(ctx, n.k.net.stack, n.ifc, ap, ft.Transport(n.k.flags.String(flagFTTransport)))
}

// dial dials the primary until it answers (it may boot later).
// A refused rendezvous is logged once for each reason (e.g. MTUs that
// differ).
func (n *ftNode) dial(ap netip.AddrPort) net.Conn {
	last := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := n.dialOnce(ctx, ap)
		cancel()
		if err == nil {
			return c
		}
		if errors.Is(err, ft.ErrRendezvous) && err.Error() != last {
			last = err.Error() // a primary not up yet is expected
			n.k.log.Printf("ft", "dial %v: %v; retrying", ap, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runSecondary mirrors the primary until it is lost, then takes over.
func (n *ftNode) runSecondary(first net.Conn) error {
	k := n.k
	peer, err := netip.ParseAddr(k.flags.String(flagFTPeer))
	if err != nil {
		return fmt.Errorf("doppel.ft.peer=%q: %w", k.flags.String(flagFTPeer), err)
	}
	ap := netip.AddrPortFrom(peer, ft.DefaultPort)
	n.prot.Set(ft.Mirroring, "connecting to the primary at "+ap.String())
	sec := ftmirror.NewSecondary(n.cfg, n.g.VM)
	n.secondary.Store(sec)
	// The primary this node becomes at a takeover, built now: under an
	// emulator NewPrimary for a 192 MiB guest took over a second (its
	// shadow of guest memory, cleared when the heap reuses memory), all
	// of it added to the failover.
	next := ftmirror.NewPrimary(n.cfg, n.g.VM, n.g.VM, n.g.VM, nodeSink{n})
	n.g.prebuild(ftGuestCPUs)
	for {
		n.link.Set(ft.LinkConnecting, ap.String(), nil)
		conn := first
		if conn == nil {
			conn = n.dial(ap)
		}
		first = nil
		n.inputs.Reset() // this session's primary numbers its own input
		n.link.Set(ft.LinkUp, peerName(conn), nil)
		n.prot.Set(ft.Mirroring, "syncing from "+peerName(conn))
		done := make(chan struct{})
		go n.watchCopy(sec, done)
		cc := &carrierConn{ReadWriteCloser: n.link.Wrap(conn)}
		if k.flags.Bool(flagFTCarrier) {
			go n.watchCarrier(cc, done)
		}
		err = sec.Serve(cc)
		close(done)
		if line, ok := ft.StreamCounters(conn); ok {
			k.log.Printf("ft", "session ether: %s", line)
		}
		n.link.Set(ft.LinkLost, "", err)
		e, complete := sec.Committed()
		k.log.Printf("ft", "session with the primary ended: %v (committed epoch %d, complete %v)", err, e, complete)
		if complete {
			break
		}
		// Nothing to take over: the primary (if it lives) still runs the
		// guest unprotected; offer ourselves again.
		n.prot.Set(ft.Mirroring, "no complete copy; connecting to the primary again")
		time.Sleep(time.Second)
	}
	time.Sleep(time.Until(sec.PromoteAt()))
	tk, err := sec.Takeover()
	if err != nil {
		n.prot.Set(ft.Unprotected, fmt.Sprintf("no takeover: %v", err))
		return nil
	}
	return n.takeover(sec, tk, next)
}

// nodeSink releases to the node's current console sink (set at the
// takeover, before the promoted primary releases anything).
type nodeSink struct{ n *ftNode }

func (s nodeSink) Release(off uint64, b []byte) error { return s.n.sink.Load().Release(off, b) }

// watchCopy reports when the secondary first holds a complete copy in
// this session.
func (n *ftNode) watchCopy(sec *ftmirror.Secondary, done <-chan struct{}) {
	var e uint64
	committed := func() (ok bool) { e, ok = sec.Committed(); return ok }
	if pollUntil(100*time.Millisecond, done, committed) {
		n.prot.Set(ft.Mirroring, "holds a complete copy")
		n.k.log.Printf("ft", "secondary: first complete epoch %d", e)
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// takeover restores the committed epoch into the secondary's VM, replays
// the committed output the world may not have seen, and runs the guest
// as the new primary (its old primary's generation plus one), releasing
// its output directly.
func (n *ftNode) takeover(sec *ftmirror.Secondary, tk ftmirror.Takeover, p *ftmirror.Primary) error {
	k := n.k
	heard := sec.LastHeard()
	tRestore := time.Now()
	if err := n.g.restore(tk.Blobs); err != nil {
		return fmt.Errorf("takeover at epoch %d: %w", tk.Epoch, err)
	}
	// This line comes first: the guest's output on this console starts
	// after it (a reader, and the tests, rely on that). The rest of what
	// the takeover has to say waits until the guest runs: under an
	// emulator each console line costs a millisecond or more.
	k.log.Printf("ft", "takeover at epoch %d: generation %d, replaying output [%d,%d), the last epoch's from %d, the one before's from %d",
		tk.Epoch, tk.Generation, tk.OutOffset, tk.OutEnd, tk.LastEpochOut, tk.PrevEpochOut)
	var report []string
	logf := func(format string, args ...any) { report = append(report, fmt.Sprintf(format, args...)) }
	// The console's stream continues at the offset the old primary had
	// released when it opened the last epoch (doc.go, "Output commit"):
	// lines of that last epoch may appear twice, none is lost.
	sink := &consoleSink{split: vmguest.NewSplitter(n.guest, n.g.outsideNIC(), tk.OutOffset, 0)}
	n.sink.Store(sink)
	// Not drained (consoleSink.Release): nothing can lose this output
	// any more than the console can, and the guest need not wait for
	// the log lines queued before it.
	if err := sink.split.Release(tk.OutOffset, tk.Out); err != nil {
		logf("replay: %v", err)
	}
	// The input the old primary received after the checkpoint, then the
	// frames for the guest from now on reach the restored NIC; the
	// outside network learns where the guest's MAC is now.
	n.replayInput(tk.Epoch, logf)
	n.g.attachNet(n.forwardInput)
	n.announce(logf)
	tPrimary := time.Now()
	p.SetGeneration(tk.Generation)
	p.Continue(tk.Epoch, tk.OutEnd, true)
	// The first output after the start is timed: under QEMU the guest
	// took 30-220 ms to produce it, running all along (docs/design.md,
	// "The first output after a takeover").
	first := make(chan time.Time, 1)
	var emitted atomic.Bool
	n.g.VM.Out.SetEmit(func(b []byte) {
		// A load first: this runs for every output record from now on.
		if !emitted.Load() && !emitted.Swap(true) {
			first <- time.Now()
		}
		p.Output(b)
	})
	n.primary.Store(p)
	n.promoted.Store(true)
	tStart := time.Now()
	err := n.g.VM.M.Start()
	tRun := time.Now()
	for _, line := range report {
		k.log.Printf("ft", "%s", line)
	}
	if err != nil {
		return fmt.Errorf("takeover: start the guest: %w", err)
	}
	n.offerConsole()
	n.prot.Set(ft.FailedOver, fmt.Sprintf("guest running from epoch %d, %.1f ms after the primary was last heard", tk.Epoch, float64(tRun.Sub(heard))/1e6))
	k.log.Printf("ft", "takeover: %.1f ms to the session's end, restore and replay %.1f ms, the new primary %.1f ms, the guest's start %.1f ms",
		ms(tRestore.Sub(heard)), ms(tPrimary.Sub(tRestore)), ms(tStart.Sub(tPrimary)), ms(tRun.Sub(tStart)))
	go func() {
		select {
		case t := <-first:
			k.log.Printf("ft", "takeover: the guest's first output came %.1f ms after its start", ms(t.Sub(tRun)))
		case <-time.After(10 * time.Second):
			k.log.Printf("ft", "takeover: no output from the guest in the 10 s after its start")
		}
	}()
	go n.watchGuest()
	go n.report(p)
	// Checkpoints without a secondary (output released directly) until a
	// new one connects; then it is brought up to date in groups while the
	// guest runs (F7) and protects the guest again.
	l, err := ft.Listen(k.net.stack, n.ifc, n.addr(ft.DefaultPort))
	if err != nil {
		p.RunAlone(make(chan struct{}))
		return fmt.Errorf("promoted primary: %w", err)
	}
	k.log.Printf("ft", "promoted primary: listening on %v for a new secondary", n.addr(ft.DefaultPort))
	stop, alone := make(chan struct{}), make(chan struct{})
	go func() { p.RunAlone(stop); close(alone) }()
	n.link.Set(ft.LinkConnecting, "", nil)
	conn, err := l.Accept()
	close(stop)
	<-alone
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	n.link.Set(ft.LinkUp, peerName(conn), nil)
	n.prot.Set(ft.Syncing, "new secondary "+peerName(conn)+" connected")
	err = p.Serve(n.link.Wrap(conn))
	n.logSessionEnd(conn, p)
	n.link.Set(ft.LinkLost, "", err)
	n.prot.Set(ft.Unprotected, fmt.Sprintf("session ended: %v; guest output is held", err))
	return n.serve(p, l)
}
