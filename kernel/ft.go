package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/console"
	"github.com/doppel-ft/doppel/ft"
	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
	"github.com/doppel-ft/doppel/net/mgmt"
)

const (
	flagFTSim       = "doppel.ft.sim"
	flagFTNIC       = "doppel.ft.nic"
	flagFTPeer      = "doppel.ft.peer"
	flagFTSimMem    = "doppel.ft.sim.mem"
	flagFTSimRate   = "doppel.ft.sim.rate"
	flagFTSimEpoch  = "doppel.ft.sim.epoch"
	flagFTSimHB     = "doppel.ft.sim.hb"
	flagFTSimMiss   = "doppel.ft.sim.hbmiss"
	flagFTSimKill   = "doppel.ft.sim.kill"
	flagFTSimProbe  = "doppel.ft.sim.probe"
	flagFTSimSeed   = "doppel.ft.sim.seed"
	flagFTSimAfter  = "doppel.ft.sim.after"
	flagFTTransport = "doppel.ft.transport"
)

func init() {
	for _, f := range []board.Flag{
		{Name: flagFTSim, Kind: board.KindEnum, Enum: []string{"", "primary", "secondary"}, Default: "",
			Help: "run the FT engine with its synthetic guest across the FT link in this role"},
		{Name: flagFTNIC, Kind: board.KindString, Help: "NIC of the FT link (default: the first one)"},
		{Name: flagFTPeer, Kind: board.KindString, Help: "the primary's FT-link address (secondary)"},
		{Name: flagFTTransport, Kind: board.KindEnum, Enum: ft.Transports, Default: "tcp",
			Help: "the FT session's byte stream, chosen by the secondary (a primary serves both): TCP, or ether (net/ethstream frames on the FT NIC)"},
		{Name: flagFTSimMem, Kind: board.KindSize, Default: "16M", Help: "synthetic guest memory"},
		{Name: flagFTSimRate, Kind: board.KindInt, Default: "2000", Min: 0, Max: 1 << 30, Help: "guest page writes per second"},
		{Name: flagFTSimEpoch, Kind: board.KindDuration, Default: "25ms", Help: "checkpoint interval"},
		{Name: flagFTSimHB, Kind: board.KindDuration, Default: "20ms", Help: "heartbeat interval"},
		{Name: flagFTSimMiss, Kind: board.KindInt, Default: "25", Min: 2, Max: 10000, Help: "missed heartbeats before the peer is lost"},
		{Name: flagFTSimKill, Kind: board.KindString, Help: "primary: stop at point[:epoch] (ftsim's kill points)"},
		{Name: flagFTSimProbe, Kind: board.KindSize, Default: "8M", Help: "bytes of each baseline transfer (raw Ethernet, TCP); 0 skips it"},
		{Name: flagFTSimSeed, Kind: board.KindInt, Default: "1", Min: 0, Max: 1 << 62, Help: "synthetic guest seed"},
		{Name: flagFTSimAfter, Kind: board.KindDuration, Default: "1s", Help: "how long a promoted secondary runs the guest before verifying"},
	} {
		mustRegister(f)
	}
}

// startFT runs doppel.ft.sim: the engine with the synthetic guest across
// the FT link, in the background; its lines go to the console.
func startFT(k *kernel) error {
	role := k.flags.String(flagFTSim)
	if role == "" {
		return nil
	}
	if k.net == nil {
		k.log.Printf("ft", "doppel.ft.sim=%s: no network (see the net lines); FT not started", role)
		return nil
	}
	ifcs := k.net.stack.Interfaces()
	ifc := ifcs[0]
	if name := k.flags.String(flagFTNIC); name != "" {
		var ok bool
		if ifc, ok = k.net.stack.Interface(name); !ok {
			k.log.Printf("ft", "doppel.ft.nic=%s: no such interface", name)
			return nil
		}
	}
	if !ifc.Config.Addr.IsValid() {
		k.log.Printf("ft", "FT NIC %s has no address (doppel.net.%s=<cidr>)", ifc.NIC.Name(), ifc.NIC.Name())
		return nil
	}
	cfg := ft.SimConfig{
		Role:  ft.Role(role),
		Guest: simguest.Params{Pages: int(k.flags.Size(flagFTSimMem) / simguest.PageSize), Seed: uint64(k.flags.Int(flagFTSimSeed)), Rate: float64(k.flags.Int(flagFTSimRate))},
		Engine: ftmirror.Config{Epoch: k.flags.Duration(flagFTSimEpoch), Forward: true, GroupBytes: 256 << 10,
			Heartbeat: ftmirror.Heartbeat{Interval: k.flags.Duration(flagFTSimHB), Misses: int(k.flags.Int(flagFTSimMiss))}},
		Stack: k.net.stack, Iface: ifc, Kill: k.flags.String(flagFTSimKill), Transport: ft.Transport(k.flags.String(flagFTTransport)),
		ProbeBytes: int64(k.flags.Size(flagFTSimProbe)), After: k.flags.Duration(flagFTSimAfter), Out: k.out,
	}
	if role == "secondary" {
		a, err := netip.ParseAddr(k.flags.String(flagFTPeer))
		if err != nil {
			k.log.Printf("ft", "doppel.ft.peer=%q: %v", k.flags.String(flagFTPeer), err)
			return nil
		}
		cfg.Peer = a
	}
	cfg.OnKill = func(p ftmirror.Point, e uint64) {
		// A dead machine sends nothing more: close the FT NIC, then power
		// off (the emulator test kills the machine on the line before).
		ifc.NIC.Close()
		k.log.Printf("ft", "killed at %s %d; powering off", p, e)
		time.Sleep(2 * time.Second)
		board.Power(board.PowerOff)
		select {}
	}
	sim, err := ft.NewSim(cfg)
	if err != nil {
		k.log.Printf("ft", "%v", err)
		return nil
	}
	var src mgmt.Source = sim
	k.net.src.Store(&src)
	k.commands = append(k.commands, console.Command{Name: "ft", Args: "link|status",
		Help: "FT link state, peer, throughput, retransmits; or the whole status",
		Run:  func(w io.Writer, args []string) error { return ftCommand(w, sim, args) }})
	go func() {
		err := sim.Run(context.Background())
		k.log.Printf("ft", "%s finished: %v", role, err)
	}()
	return nil
}

func ftCommand(w io.Writer, sim *ft.Sim, args []string) error {
	what := "link"
	if len(args) > 0 {
		what = args[0]
	}
	switch what {
	case "link":
		ls := sim.Link.Status()
		tr := strings.ToUpper(ls.Transport)
		if tr == "" {
			tr = "TCP"
		}
		_, err := fmt.Fprintf(w, "ft link: %s, peer %s, since %s\n  tx %d bytes (%.2f MB/s), rx %d bytes (%.2f MB/s), %d %s retransmits\n",
			ls.State, orDash(ls.Peer), ls.Since.Format(time.TimeOnly), ls.TxBytes, ls.TxMBps, ls.RxBytes, ls.RxMBps, ls.Retransmits, tr)
		if err == nil && ls.LastError != "" {
			_, err = fmt.Fprintf(w, "  last error: %s\n", ls.LastError)
		}
		return err
	case "status":
		b, err := json.MarshalIndent(sim.Status(), "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return fmt.Errorf("ft %s: want link or status", what)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
