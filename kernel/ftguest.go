package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/console"
	"github.com/doppel-ft/doppel/ft"
	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/net/mgmt"
	"github.com/doppel-ft/doppel/net/netstack"
	"github.com/doppel-ft/doppel/vmm/dirtytest"
	"github.com/doppel-ft/doppel/vmm/pc"
)

// The protected guest (issue 12): doppel.ft.role=primary runs the guest
// doppel.guest names (under VT-x or AMD-V) and mirrors it over the FT link to the
// node started with doppel.ft.role=secondary and doppel.ft.peer=<the
// primary's FT-link address>, which keeps the guest's memory and last
// committed state without running it, and runs it from there when the
// primary is lost. The guest's serial output is released on the console,
// and its NIC's frames on the doppel.guest.net NIC (ftguest_net.go), only
// once the checkpoint that produced them is acknowledged.
const (
	flagFTRole   = "doppel.ft.role"
	flagFTEpoch  = "doppel.ft.epoch"
	flagFTHB     = "doppel.ft.hb"
	flagFTHBMiss = "doppel.ft.hbmiss"
	flagFTKill   = "doppel.ft.kill"
	flagFTHold   = "doppel.ft.kill.hold"
	flagFTZip    = "doppel.ft.compress"
)

func init() {
	for _, f := range []board.Flag{
		{Name: flagFTRole, Kind: board.KindEnum, Enum: []string{"", "primary", "secondary", "auto"}, Default: "",
			Help: "protect doppel.guest across the FT link in this role (secondary and auto need doppel.ft.peer; auto: ftmirror/doc.go's rule)"},
		{Name: flagFTEpoch, Kind: board.KindDuration, Default: "50ms", Help: "checkpoint interval of the protected guest"},
		{Name: flagFTHB, Kind: board.KindDuration, Default: "20ms", Help: "FT-link heartbeat interval"},
		{Name: flagFTHBMiss, Kind: board.KindInt, Default: "25", Min: 2, Max: 10000, Help: "missed heartbeats before the peer is lost"},
		{Name: flagFTKill, Kind: board.KindString, Help: "primary: stop dead at point[:epoch] (test fault injection, as doppel.ft.sim.kill)"},
		{Name: flagFTCarrier, Kind: board.KindBool, Default: "1", Help: "secondary: the FT NIC's loss of carrier is the primary's death (promote at once; 0 where a switch sits between the pair)"},
		{Name: flagFTHold, Kind: board.KindBool, Default: "0", Help: "doppel.ft.kill waits for the shell's ftkill command (a test arms it when ready)"},
		{Name: flagFTZip, Kind: board.KindEnum, Enum: []string{"zstd", "s2", "off"}, Default: "zstd",
			Help: "compression of checkpoint groups on the FT link, kept per group only where it pays (ftmirror/doc.go)"},
	} {
		mustRegister(f)
	}
}

// ftGuestNode is the running node, for the shell's protect command.
var ftGuestNode atomic.Pointer[ftNode]

// ftGuestOn is set when doppel.ft.role takes the guest over from the
// guest subsystem.
var ftGuestOn atomic.Bool

// startFTGuest starts the protected guest in the background.
func startFTGuest(k *kernel) error {
	role := k.flags.String(flagFTRole)
	if role == "" {
		return nil
	}
	ftGuestOn.Store(true)
	k.commands = append(k.commands, console.Command{Name: "protect",
		Help: "the protected guest: role, peer, protection state, link, epoch and checkpoint figures (as /status)",
		Run: func(w io.Writer, _ []string) error {
			n := ftGuestNode.Load()
			if n == nil {
				return errors.New("protect: the protected guest is not set up (see the ft lines)")
			}
			b, err := json.MarshalIndent(n.Status(), "", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}})
	k.commands = append(k.commands, console.Command{Name: "ftkill",
		Help: "arm the kill point doppel.ft.kill held by doppel.ft.kill.hold (test fault injection)",
		Run: func(w io.Writer, _ []string) error {
			n := ftGuestNode.Load()
			if n == nil || n.kill == nil {
				return errors.New("ftkill: no kill point (doppel.ft.kill)")
			}
			n.kill.Arm()
			_, err := fmt.Fprintf(w, "ftkill: armed at %s\n", n.kill.Point())
			return err
		}})
	go func() {
		if err := runFTGuest(k, ft.Role(role)); err != nil {
			k.log.Printf("ft", "protected guest (%s): %v", role, err)
		}
	}()
	return nil
}

// ftNode is one side of the pair.
type ftNode struct {
	k     *kernel
	role  atomic.Value // ft.Role: auto turns into primary or secondary
	g     *ftGuest
	ifc   *netstack.Interface
	link  *ft.Link
	prot  *ft.ProtectionState
	cfg   ftmirror.Config
	guest *lineWriter // the console's guest lines
	kill  *ft.Kill    // nil without doppel.ft.kill
	// input is the console's way to the guest's COM1, attached on the
	// node that runs the guest (the shell's Ctrl-A c switches to it).
	input pc.Input

	primary   atomic.Pointer[ftmirror.Primary]
	sink      atomic.Pointer[consoleSink]
	secondary atomic.Pointer[ftmirror.Secondary]
	// inputs keeps the frames the primary forwarded (on a secondary).
	inputs   *vmguest.InputLog
	promoted atomic.Bool
	start    time.Time
}

func runFTGuest(k *kernel, role ft.Role) error {
	if k.net == nil {
		return errors.New("no network (see the net lines)")
	}
	ifc := k.net.stack.Interfaces()[0]
	if name := k.flags.String(flagFTNIC); name != "" {
		var ok bool
		if ifc, ok = k.net.stack.Interface(name); !ok {
			return fmt.Errorf("doppel.ft.nic=%s: no such interface", name)
		}
	}
	if !ifc.Config.Addr.IsValid() {
		return fmt.Errorf("FT NIC %s has no address (doppel.net.%s=<cidr>)", ifc.NIC.Name(), ifc.NIC.Name())
	}
	gc := ftGuestConfig{MemSize: k.flags.Size(dirtytest.FlagGuestMem), DMA: k.flags.Size(board.FlagDMA), Log: k.log.Writer("guest"),
		ForceScan: k.flags.Bool(dirtytest.FlagScan)}
	// A harvest that times out ends the session, and the secondary then
	// takes over at once (the link closed): on a stall shorter than the
	// heartbeat deadline that is a false failover. Under QEMU TCG at load
	// 25 a vCPU twice took over 1 s to answer; wait out the deadline.
	gc.HarvestTimeout = max(time.Second, k.flags.Duration(flagFTHB)*time.Duration(k.flags.Int(flagFTHBMiss)))
	if role != ft.RoleSecondary { // auto may become primary
		name := k.flags.String(board.FlagGuest)
		mods, err := board.ReadModules()
		if err != nil {
			return err
		}
		m, ok := board.FindModule(mods, name)
		if !ok {
			return fmt.Errorf("doppel.guest=%q: no such module (the primary needs its kernel)", name)
		}
		if gc.Kernel, err = readModule(m); err != nil {
			return err
		}
		gc.Cmdline = moduleArgs(m.Name)
		if name := k.flags.String(FlagGuestInitrd); name != "" {
			im, ok := board.FindModule(mods, name)
			if !ok {
				return fmt.Errorf("doppel.guest.initrd=%q: no such module", name)
			}
			if gc.Initrd, err = readModule(im); err != nil {
				return err
			}
		}
	}
	br, err := newGuestBridge(k)
	if err != nil {
		return err
	}
	gc.Net = br
	g, err := newFTGuest(gc)
	if err != nil {
		return err
	}
	n := &ftNode{k: k, g: g, ifc: ifc, guest: newLineWriter(k.out, 50*time.Millisecond), start: time.Now(),
		link: &ft.Link{Retransmits: func() uint64 { return k.net.stack.TCP().Retransmits }},
		prot: ft.NewProtectionState(k.log.Writer("ft"), ft.Unprotected, "starting")}
	n.role.Store(role)
	n.cfg = ftmirror.Config{PSK: ft.SimPSK, Generation: 1, Epoch: k.flags.Duration(flagFTEpoch), GroupBytes: 256 << 10,
		Heartbeat: ftmirror.Heartbeat{Interval: k.flags.Duration(flagFTHB), Misses: int(k.flags.Int(flagFTHBMiss))},
		Forward:   true, WholeReleases: true}
	n.inputs = vmguest.NewInputLog(inputLogFrames, inputLogBytes)
	n.cfg.Input = func(b []byte) { n.inputs.Add(b) } // a bad record is counted
	if n.cfg.Compression, err = ftmirror.ParseCompression(k.flags.String(flagFTZip)); err != nil {
		return err
	}
	kill, err := ft.ParseKill(k.flags.String(flagFTKill))
	if err != nil {
		return err
	}
	if kill != nil && k.flags.Bool(flagFTHold) {
		kill.Hold()
	}
	n.kill = kill
	// The hooks run on whichever node is primary: a secondary's kill point
	// applies once it has taken over.
	n.cfg.ExactHooks, n.cfg.SplitGroups = kill != nil, kill.Split()
	n.cfg.Hook = func(pt ftmirror.Point, e uint64) {
		n.prot.Hook(pt, e)
		if kill.Hit(pt, e) {
			n.die(pt, e)
		}
	}
	var src mgmt.Source = n
	k.net.src.Store(&src)
	ftGuestNode.Store(n)
	var first net.Conn
	if role == roleAuto {
		if role, first, err = n.elect(); err != nil {
			return err
		}
		n.role.Store(role)
	}
	if role == ft.RolePrimary {
		return n.runPrimary()
	}
	return n.runSecondary(first)
}

// peerName names a session's peer: its address, and the transport when
// it is not TCP.
func peerName(c net.Conn) string {
	a := c.RemoteAddr()
	if a.Network() == "tcp" {
		return a.String()
	}
	return a.String() + " (" + a.Network() + ")"
}

func (n *ftNode) addr(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(n.ifc.Config.Addr.Addr(), port)
}

// consoleSink is the outside world: the guest's released serial lines on
// the console. Once the node is dead (a kill point) it takes nothing.
type consoleSink struct {
	split *vmguest.Splitter
	dead  atomic.Bool
}

var errDead = errors.New("ft: this node was killed")

// Release returns once the released lines have left the machine: the
// console queues output (board.DrainConsole), and output the primary calls
// released must not die with it in the queue, where neither the world nor
// the secondary's replay would see it.
func (s *consoleSink) Release(off uint64, b []byte) error {
	if s.dead.Load() {
		return errDead
	}
	if err := s.split.Release(off, b); err != nil {
		return err
	}
	return board.DrainConsole()
}

// noNIC is the physical port of a guest without a NIC.
type noNIC struct{}

func (noNIC) Send([]byte) error { return errors.New("the protected guest has no NIC") }

// outsideNIC is where released frames go: the bridge, or noNIC.
func (g *ftGuest) outsideNIC() vmguest.NIC {
	if g.Net == nil {
		return noNIC{}
	}
	return g.Net
}

// runPrimary starts the guest and serves each secondary that connects.
func (n *ftNode) runPrimary() error {
	k := n.k
	n.prot.Set(ft.Unprotected, "no secondary yet; guest output is held")
	sink := &consoleSink{split: vmguest.NewSplitter(n.guest, n.g.outsideNIC(), 0, 0)}
	n.sink.Store(sink)
	n.g.attachNet(n.forwardInput)
	cfg := n.cfg
	p := ftmirror.NewPrimary(cfg, n.g.VM, n.g.VM, n.g.VM, sink)
	n.g.VM.Out.SetEmit(p.Output)
	n.primary.Store(p)
	l, err := ft.Listen(k.net.stack, n.ifc, n.addr(ft.DefaultPort))
	if err != nil {
		return err
	}
	if err := n.g.VM.M.Start(); err != nil {
		return fmt.Errorf("start the guest: %w", err)
	}
	n.offerConsole()
	go n.watchGuest()
	go n.report(p)
	k.log.Printf("ft", "primary: guest running, %s RAM, epoch %v; listening on %v", board.FormatBytes(uint64(len(n.g.VM.M.Mem))), cfg.Epoch, n.addr(ft.DefaultPort))
	return n.serve(p, l)
}

// serve serves each secondary that connects to the primary p, one at a
// time; a session's end leaves the guest unprotected, its output held.
func (n *ftNode) serve(p *ftmirror.Primary, l net.Listener) error {
	n.link.Set(ft.LinkConnecting, "", nil)
	for {
		conn, err := l.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		n.link.Set(ft.LinkUp, peerName(conn), nil)
		n.prot.Set(ft.Syncing, "secondary "+peerName(conn)+" connected")
		err = p.Serve(n.link.Wrap(conn))
		n.logSessionEnd(conn, p)
		n.link.Set(ft.LinkLost, "", err)
		n.prot.Set(ft.Unprotected, fmt.Sprintf("session ended: %v; guest output is held", err))
		if errors.Is(err, ftmirror.ErrFenced) {
			return err
		}
	}
}

// logSessionEnd logs a primary's figures for the session on conn that
// just ended: the Ethernet stream's counters and the input forwarded.
func (n *ftNode) logSessionEnd(conn net.Conn, p *ftmirror.Primary) {
	if line, ok := ft.StreamCounters(conn); ok {
		n.k.log.Printf("ft", "session ether: %s", line)
	}
	sent, dropped := p.Inputs()
	n.k.log.Printf("ft", "input forwarded to secondaries so far: %d frames, %d dropped (link behind)", sent, dropped)
}

// offerConsole lets the console reach the running guest's COM1 (Ctrl-A
// c from doppel's shell): on the primary, and on a secondary once it has
// taken over. Typed bytes are guest input like a received frame: a
// failover may lose what the last checkpoint did not hold.
func (n *ftNode) offerConsole() {
	n.input.Attach(n.g.Board)
	guestConsole.offerGuest(&n.input)
}

// offerGuest gives the console a guest to switch to without switching:
// the console stays with doppel's shell until Ctrl-A c.
func (c *consoleMux) offerGuest(in *pc.Input) {
	c.mu.Lock()
	c.guest = in
	c.mu.Unlock()
	c.start()
}

// die makes this primary stop dead at a kill point: nothing more reaches
// the console or the link; the test kills the emulator on the line.
func (n *ftNode) die(pt ftmirror.Point, e uint64) {
	if s := n.sink.Load(); s != nil {
		s.dead.Store(true)
	}
	n.ifc.NIC.Close()
	n.guest.flush()
	// What the secondary's input replay can be checked against: frames
	// numbered up to the rx seq reached the guest; those its log lacks
	// were lost with this node. Before the kill point's line, which a
	// test kills the emulator on.
	if p := n.primary.Load(); p != nil && n.g.Net != nil {
		sent, dropped := p.Inputs()
		n.k.log.Printf("ft", "dying: guest NIC rx seq %d, %d input frames handed to the link, %d dropped", n.g.Board.NetRxSeq(), sent, dropped)
	}
	n.k.log.Printf("ft", "kill point %s epoch %d: the primary stops here", pt, e)
	time.Sleep(2 * time.Second)
	board.Power(board.PowerOff)
	select {}
}

// watchGuest reports when the guest stops by itself.
func (n *ftNode) watchGuest() {
	<-n.g.VM.M.Done()
	err := n.g.VM.M.Wait()
	why := n.g.stopReason()
	if err != nil {
		why = err.Error()
	}
	n.k.log.Printf("ft", "guest stopped: %s", why)
}

// report prints the checkpoint figures every second while a primary runs.
func (n *ftNode) report(p *ftmirror.Primary) {
	synced := false
	for range time.Tick(time.Second) {
		sum := p.Stats.Summary()
		if !synced && sum.SyncSeconds > 0 {
			synced = true
			n.k.log.Printf("ft", "initial sync: %.3f s, %.1f MB/s, brownout rounds %v",
				sum.SyncSeconds, float64(sum.SyncBytes)/sum.SyncSeconds/1e6, sum.BrownoutRounds)
		}
		if sum.Checkpoints == 0 {
			continue
		}
		arrive, park, capture := n.g.VM.PauseParts()
		n.k.log.Printf("ft", "checkpoints: %d, pause p50 %.3f ms, p99 %.3f ms, max %.3f ms; epoch %d; %.0f wire bytes, %.0f dirty bytes per checkpoint; release latency p50 %.2f ms, p99 %.2f ms; groups %d, %d sent %s-compressed, %d bytes as %d; pause p99 by part: stop %.3f, harvest %.3f, copy %.3f, rest %.3f ms; the stop's longest parts in the last second: vCPUs at an exit %.3f, parked %.3f, state captured %.3f ms",
			sum.Checkpoints, sum.PauseP50ms, sum.PauseP99ms, sum.PauseMaxms, p.Epoch(),
			sum.WireBytesPerCkpt, sum.DirtyBytesPerCk, sum.ReleaseP50ms, sum.ReleaseP99ms,
			sum.Groups, sum.GroupsCompressed, sum.Compression, sum.GroupRawBytes, sum.GroupWireBytes,
			sum.PauseParts[0][0], sum.PauseParts[1][0], sum.PauseParts[2][0], sum.PauseParts[3][0],
			ms(arrive), ms(park), ms(capture))
	}
}

// Status implements mgmt.Source.
func (n *ftNode) Status() mgmt.Status {
	ls := n.link.Status()
	st := mgmt.Status{Role: string(n.role.Load().(ft.Role)), Peer: ls.Peer, LinkState: string(ls.State), LinkTransport: ls.Transport, LinkTxMBps: ls.TxMBps,
		LinkRxMBps: ls.RxMBps, LinkTxBytes: ls.TxBytes, LinkRxBytes: ls.RxBytes, Retransmits: ls.Retransmits,
		UptimeSeconds: time.Since(n.start).Seconds()}
	if sink := n.sink.Load(); sink != nil {
		st.ReleasedBytes = sink.split.Offset()
	}
	s, d, _ := n.prot.Get()
	st.Protection = string(s)
	if d != "" {
		st.Protection += " (" + d + ")"
	}
	st.GuestState = n.guestState()
	if n.promoted.Load() {
		st.Role = "promoted"
	}
	if p := n.primary.Load(); p != nil {
		st.Epoch = p.Epoch()
		sum := p.Stats.Summary()
		st.Checkpoints, st.PauseP50ms, st.PauseP99ms, st.SyncSeconds = uint64(sum.Checkpoints), sum.PauseP50ms, sum.PauseP99ms, sum.SyncSeconds
	} else if s := n.secondary.Load(); s != nil {
		st.Epoch, _ = s.Committed()
	}
	return st
}

// guestState is the guest's run state for /status.
func (n *ftNode) guestState() string {
	select {
	case <-n.g.VM.M.Done():
		return "stopped"
	default:
	}
	if n.role.Load() == ft.RoleSecondary && !n.promoted.Load() {
		return "mirroring"
	}
	return "running"
}

// Checkpoints implements mgmt.Source (no plot for the protected guest yet).
func (n *ftNode) Checkpoints(time.Time) []mgmt.Point { return nil }
