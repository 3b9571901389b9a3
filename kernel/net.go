package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/console"
	"github.com/doppel-ft/doppel/net/mgmt"
	"github.com/doppel-ft/doppel/net/netstack"
	"github.com/doppel-ft/doppel/nic"
)

// nicDriver hands the net subsystem NICs. The one built in returns the
// NICs the nic subsystem opened (e1000, virtio-net over PCI; nic.go), which
// starts before net; host tests put an in-memory wire here instead.
type nicDriver struct {
	name  string
	probe func() ([]nic.NIC, error)
}

var nicDrivers = []nicDriver{{name: "pci", probe: func() ([]nic.NIC, error) {
	nics.mu.Lock()
	defer nics.mu.Unlock()
	return append([]nic.NIC(nil), nics.nics...), nil
}}}

// nicNames are the interface names doppel.net.<nic> flags exist for: the
// first two of each driver (the registry needs exact names).
var nicNames = []string{"e1000-0", "e1000-1", "virtio-net-0", "virtio-net-1"}

const (
	flagNetPrefix = "doppel.net."
	flagMgmtPort  = "doppel.net.mgmt.port"
	flagTCPBuf    = "doppel.net.tcp.buf"
	flagGRO       = "doppel.net.gro"
	flagGSO       = "doppel.net.gso"
	flagTSO       = "doppel.net.tso"
)

func init() {
	for _, n := range nicNames {
		mustRegister(board.Flag{Name: flagNetPrefix + n, Kind: board.KindString,
			Help: "address of NIC " + n + ": <ipv4>/<bits>[,gw=<ipv4>] or dhcp"})
	}
	mustRegister(board.Flag{Name: flagTCPBuf, Kind: board.KindSize, Default: "0",
		Help: "cap of each TCP socket's buffers and window (0: 8M); a small one suits a slow, bursty-lossy wire such as Bochs's"})
	mustRegister(board.Flag{Name: flagGRO, Kind: board.KindBool, Default: "1",
		Help: "coalesce received TCP segments before the stack handles them (generic receive offload)"})
	mustRegister(board.Flag{Name: flagGSO, Kind: board.KindBool, Default: "1",
		Help: "let TCP handle up to 64 KiB as one segment, cut into frames only when sent (gVisor's software segmentation offload)"})
	mustRegister(board.Flag{Name: flagTSO, Kind: board.KindBool, Default: "1",
		Help: "with doppel.net.gso, let a NIC that segments TCP itself (e1000) cut the segments into frames (TCP segmentation offload)"})
	mustRegister(board.Flag{Name: flagMgmtPort, Kind: board.KindInt, Default: "0", Min: 0, Max: 65535,
		Help: "TCP port of the management HTTP server (/status, /metrics, plot page); 0: off"})
}

func mustRegister(f board.Flag) {
	if err := board.Known.Register(f); err != nil {
		panic(err) // a bad built-in flag is a programming error
	}
}

// netState is what the net subsystem leaves for the FT subsystem and the
// shell.
type netState struct {
	stack *netstack.Stack
	src   atomic.Pointer[mgmt.Source] // what /status reports; set by the FT subsystem
}

// idleSource is the management server's source while FT is not running.
type idleSource struct{ start time.Time }

func (s idleSource) Status() mgmt.Status {
	return mgmt.Status{Role: "none", LinkState: "down", GuestState: "none", UptimeSeconds: time.Since(s.start).Seconds()}
}
func (idleSource) Checkpoints(time.Time) []mgmt.Point { return nil }

func (n *netState) Status() mgmt.Status { return (*n.src.Load()).Status() }
func (n *netState) Checkpoints(t time.Time) []mgmt.Point {
	return (*n.src.Load()).Checkpoints(t)
}

// startNet attaches every NIC found to the stack, gives those named by a
// doppel.net.<nic> flag their address, and starts the management server.
// Missing drivers or NICs are reported, not fatal.
func startNet(k *kernel) error {
	var cfgs = map[string]netstack.Config{}
	for _, n := range nicNames {
		v := k.flags.String(flagNetPrefix + n)
		if v == "" {
			continue
		}
		c, err := netstack.ParseConfig(v)
		if err != nil {
			k.log.Printf("net", "%s%s=%s: %v; the NIC stays unconfigured", flagNetPrefix, n, v, err)
			continue
		}
		cfgs[n] = c
	}
	if len(cfgs) == 0 && k.flags.String(flagFTSim) == "" {
		return nil
	}
	var nics []nic.NIC
	for _, d := range nicDrivers {
		found, err := d.probe()
		if err != nil {
			k.log.Printf("net", "%s: %v", d.name, err)
		}
		nics = append(nics, found...)
	}
	if len(nics) == 0 {
		k.log.Printf("net", "no NIC found (%d drivers in this build); no network", len(nicDrivers))
		return nil
	}
	st, err := netstack.New()
	if err != nil {
		return err
	}
	if n := k.flags.Size(flagTCPBuf); n != 0 {
		if err := st.LimitTCPBuffers(int(n)); err != nil {
			k.log.Printf("net", "%s: %v", flagTCPBuf, err)
		}
	}
	k.net = &netState{stack: st}
	var src mgmt.Source = idleSource{start: time.Now()}
	k.net.src.Store(&src)
	for _, n := range nics {
		if n.Name() == k.flags.String(FlagGuestNet) {
			k.log.Printf("net", "%s: left to the guest (%s)", n.Name(), FlagGuestNet)
			continue
		}
		c := cfgs[n.Name()]
		ifc, err := st.Add(n, c)
		if err != nil {
			k.log.Printf("net", "%v", err)
			continue
		}
		ifc.Link.SetGRO(k.flags.Bool(flagGRO))
		ifc.Link.SetGSO(k.flags.Bool(flagGSO))
		ifc.Link.SetTSO(k.flags.Bool(flagTSO))
		m := n.MAC()
		k.log.Printf("net", "%s %02x:%02x:%02x:%02x:%02x:%02x mtu %d link %v: %s", n.Name(), m[0], m[1], m[2], m[3], m[4], m[5],
			n.MTU(), linkWord(n.LinkUp()), c)
		if c.DHCP {
			go k.dhcp(st, ifc)
		}
	}
	k.commands = append(k.commands, console.Command{Name: "net", Help: "interfaces, addresses, counters, TCP statistics",
		Run: func(w io.Writer, _ []string) error { return writeNet(w, st) }})
	if port := k.flags.Int(flagMgmtPort); port != 0 {
		l, err := st.Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port)))
		if err != nil {
			k.log.Printf("net", "management server: %v", err)
			return nil
		}
		k.log.Printf("net", "management server on port %d (/status, /metrics, /)", port)
		go func() { k.log.Printf("net", "management server ended: %v", mgmt.Serve(l, k.net)) }()
	}
	return nil
}

// dhcpTimeout bounds the DHCP exchange at boot; the boot does not wait.
const dhcpTimeout = 60 * time.Second

func (k *kernel) dhcp(st *netstack.Stack, ifc *netstack.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), dhcpTimeout)
	defer cancel()
	c, err := st.RunDHCP(ctx, ifc)
	if err != nil {
		k.log.Printf("net", "%v", err)
		return
	}
	k.log.Printf("net", "%s: dhcp: %s", ifc.NIC.Name(), c)
}

func linkWord(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func writeNet(w io.Writer, st *netstack.Stack) error {
	for _, ifc := range st.Interfaces() {
		c := ifc.NIC.Counters()
		ls := ifc.Link.Stats()
		fmt.Fprintf(w, "%s: %s, link %s, mtu %d\n", ifc.NIC.Name(), ifc.Config, linkWord(ifc.NIC.LinkUp()), ifc.NIC.MTU())
		fmt.Fprintf(w, "  tx %d frames %d bytes (ring full %d, dropped %d); rx %d frames %d bytes (dropped %d, errors %d); interrupts %d; TCP/UDP fragments dropped %d\n",
			c.TxFrames, c.TxBytes, c.TxQueueFull, ls.TxDropped, c.RxFrames, c.RxBytes, c.RxDropped, c.RxErrors, c.Interrupts, ls.RxFragments)
	}
	t := st.TCP()
	_, err := fmt.Fprintf(w, "tcp: %d segments sent, %d received, %d retransmitted (%d fast), %d timeouts, %d checksum errors; ip: %d malformed\n",
		t.SegmentsSent, t.SegmentsReceived, t.Retransmits, t.FastRetransmits, t.Timeouts, t.ChecksumErrors, t.IPMalformed)
	for _, ifc := range st.Interfaces() {
		if d, ok := ifc.NIC.(nic.Describer); ok && err == nil {
			_, err = fmt.Fprintf(w, "%s rings: %s\n", ifc.NIC.Name(), d.Describe())
		}
	}
	return err
}
