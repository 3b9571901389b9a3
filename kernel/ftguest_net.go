package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices/virtionet"
	"github.com/doppel-ft/doppel/vmm/loader"
	"github.com/doppel-ft/doppel/vmm/pc"
)

// The protected guest's NIC and its Linux boot: output commit on the
// network (issue 12). The guest's transmitted frames become records of
// the VM's Output, held by the engine until their checkpoint is
// acknowledged; the Splitter then sends them, in order, through the
// bridge (ftGuest.Net). Received frames go to the device only on the node
// that runs the guest; during a checkpoint pause the device holds them
// (vmguest.VM quiesces it). Each frame the primary's guest NIC accepts is
// also forwarded to the secondary (ftmirror's INPUT frames). At takeover
// the promoted secondary replays the committed output per the engine's
// rule, gives the restored NIC the forwarded frames its checkpoint did not
// hold, then announces the guest on the outside network with a gratuitous
// ARP (doppel.guest.ip).

// netConfig is the board's NIC: the VM's Output takes the frames and the
// VM's DMA view (which marks written pages dirty) is the rings' memory.
// Both are reached through g.VM, which is built after the board and set
// before the guest can run.
func (g *ftGuest) netConfig() *pc.NetConfig {
	if g.Net == nil {
		return nil
	}
	return &pc.NetConfig{
		MAC:     g.Net.MAC(),
		Backend: virtionet.BackendFunc(func(seq uint64, f []byte) { g.VM.Out.Transmit(seq, f) }),
		Memory:  lazyDMA{g},
	}
}

// lazyDMA is g.VM.DMA(), looked up at each access.
type lazyDMA struct{ g *ftGuest }

func (m lazyDMA) ReadAt(p []byte, gpa uint64) error  { return m.g.VM.DMA().ReadAt(p, gpa) }
func (m lazyDMA) WriteAt(p []byte, gpa uint64) error { return m.g.VM.DMA().WriteAt(p, gpa) }

// attachNet lets the running node's guest receive (nil-safe). Each frame
// the guest's NIC accepts also goes, with its receive sequence number, to
// forward (the primary's input forwarding: ftmirror/input.go).
func (g *ftGuest) attachNet(forward func(seq uint64, frame []byte)) {
	if g.Net == nil {
		return
	}
	g.Net.SetDeliver(func(frame []byte) bool {
		seq, ok := g.Board.NetReceiveSeq(frame)
		if ok {
			forward(seq, frame)
		}
		return ok
	})
}

// forwardInput hands a frame the guest accepted to the primary, which
// sends it to the secondary if one is connected.
func (n *ftNode) forwardInput(seq uint64, frame []byte) {
	if p := n.primary.Load(); p != nil {
		p.Input(vmguest.AppendInput(nil, seq, frame))
	}
}

// inputLogFrames and inputLogBytes bound the secondary's log of
// forwarded input: the input of an epoch or two is all a takeover uses.
const (
	inputLogFrames = 2048
	inputLogBytes  = 4 << 20
)

// replayInput gives the restored guest NIC, in order, the frames the old
// primary accepted after the checkpoint the takeover restored (numbered
// above the restored NIC's RxSeq), before any new frame reaches it.
func (n *ftNode) replayInput(epoch uint64, logf func(format string, args ...any)) {
	if n.g.Net == nil {
		return
	}
	rx := n.g.Board.NetRxSeq()
	frames, first := n.inputs.After(rx)
	refused := 0
	for _, f := range frames {
		if !n.g.Board.NetReceive(f) {
			refused++
		}
	}
	st := n.inputs.Stats()
	if len(frames) == 0 {
		logf("takeover: no input after epoch %d's checkpoint to replay (NIC rx seq %d; input log: %d frames to seq %d, %d evicted, %d bad)",
			epoch, rx, st.Frames, st.Last, st.Evicted, st.Bad)
		return
	}
	logf("takeover: replayed %d input frames received after epoch %d's checkpoint (rx seq %d, from %d to %d), %d refused by the NIC; input log: %d evicted, %d bad",
		len(frames), epoch, rx, first, st.Last, refused, st.Evicted, st.Bad)
}

// loadFTKernel loads the primary's kernel into mem. A Linux kernel also
// gets the board's ACPI tables (its PCI host bridge routes the NIC's
// INTx) and, under AMD-V, the TSC rate on its command line, as pc.Run
// gives them.
func loadFTKernel(o ftGuestConfig, v ftVendor, mem vmm.GuestMemory, tscHz uint64) (*loader.BootState, error) {
	layout := loader.NewPCLayout(o.MemSize)
	cmdline := o.Cmdline
	kind, err := loader.Detect(o.Kernel)
	if err != nil {
		return nil, fmt.Errorf("ft guest: %w", err)
	}
	if kind == loader.KindBzImage {
		t, err := pc.ACPITablesFor(ftGuestCPUs, o.Net != nil)
		if err != nil {
			return nil, err
		}
		if err := mem.Write(t.Base, t.Bytes); err != nil {
			return nil, fmt.Errorf("ft guest: ACPI tables: %w", err)
		}
		layout.RSDP = t.RSDP
		if _, ok := v.(*svmVendor); ok && !strings.Contains(cmdline, "tsc_early_khz=") {
			// Linux on AMD calibrates the TSC against the PIT, which fails
			// under an emulator (vmm/pc/svm.go, withTSCRate).
			cmdline = strings.TrimSpace(fmt.Sprintf("%s tsc_early_khz=%d", cmdline, tscHz/1000))
		}
	}
	state, kind, err := loader.Load(loader.Flat(mem), loader.Config{Layout: layout, Kernel: o.Kernel, Initrd: o.Initrd, Cmdline: cmdline})
	if err != nil {
		return nil, fmt.Errorf("ft guest: load kernel: %w", err)
	}
	fmt.Fprintf(o.Log, "%s: %v kernel, %s RAM, entry %#x (%v), NIC %v\n", v.name(), kind, board.FormatBytes(o.MemSize), state.RIP, state.Mode, o.Net != nil)
	return state, nil
}

// FlagGuestIP is the guest's IPv4 address, announced by a gratuitous ARP
// when a promoted secondary takes the guest over.
const FlagGuestIP = "doppel.guest.ip"

func init() {
	mustRegister(board.Flag{Name: FlagGuestIP, Kind: board.KindString, Default: "",
		Help: "the guest's IPv4 address: announced (gratuitous ARP from doppel.guest.mac) at a failover"})
}

// announce sends the gratuitous ARP after a takeover, if the guest has a
// NIC and an address to announce, and says what it did to logf.
func (n *ftNode) announce(logf func(format string, args ...any)) {
	if n.g.Net == nil {
		return
	}
	s := n.k.flags.String(FlagGuestIP)
	if s == "" {
		logf("takeover: no %s, no gratuitous ARP", FlagGuestIP)
		return
	}
	ip, err := netip.ParseAddr(s)
	if err == nil {
		err = n.g.Net.Announce(ip)
	}
	if err != nil {
		logf("takeover: gratuitous ARP for %s=%s: %v", FlagGuestIP, s, err)
		return
	}
	logf("takeover: gratuitous ARP: %s is at %s", ip, macString(n.g.Net.MAC()))
}
