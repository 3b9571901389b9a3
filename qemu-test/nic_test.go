package qemutest

import (
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NIC tests: two doppel instances whose NICs share one emulated wire. One
// serves (doppel.nictest=serve: answers probes and echo requests, counts
// and checks every byte of data frames); the other pings, then blasts
// big frames one way. The server's count of intact frames over the time
// from the first to the last data frame is the wire's raw throughput.

const (
	nicPings     = 50
	nicPingSize  = 1000
	nicBlastSize = 1514 // the largest frame without FCS at MTU 1500
)

// nicFail is a nictest failure line: the test stops waiting at once.
var nicFail = regexp.MustCompile(`nictest: \S+ FAIL[^\r\n]*`)

// nicExpect waits until re matches anywhere in m's output so far (the
// lines of NICs tested at once interleave in any order; each pattern
// names its NIC) and returns the first match's submatches.
func nicExpect(t *testing.T, m *Machine, re string, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		out := m.Output()
		if subs := rx.FindStringSubmatch(out); subs != nil {
			return subs
		}
		if fail := nicFail.FindString(out); fail != "" {
			t.Fatalf("%s: %s", m.name, fail)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q within %v; tail:\n%s", m.name, re, timeout, m.Tail(2000))
		}
	}
}

// checkNICRun checks one NIC's ping and blast between a serving and a
// client instance that were booted with doppel.nictest, and logs the
// throughput. lossy says the wire may drop frames out of the drivers'
// sight (bxhub's UDP, QEMU's e1000 transmit queue); otherwise every lost
// frame must be counted by the receiving driver.
func checkNICRun(t *testing.T, server, client *Machine, name string, pings, blast int, lossy bool) {
	t.Helper()
	q := regexp.QuoteMeta(name)
	ping := nicExpect(t, client, fmt.Sprintf(`nictest: %s ping %d frames: (\d+) replies, (\d+) corrupt, median rtt (\S+)\r?\n`, q, pings), 5*time.Minute)
	if ping[1] != strconv.Itoa(pings) || ping[2] != "0" {
		t.Errorf("%s ping: %s", name, ping[0])
	}
	s := nicExpect(t, server, `nictest: `+q+` serve received (\d+) of (\d+) data frames \((\d+) corrupt, (-?\d+) lost\) (\d+) bytes in ([\d.]+) s: (\d+) frames/s ([\d.]+) MB/s\r?\n`, 10*time.Minute)
	counters := nicExpect(t, server, `nictest: `+q+` counters [^\r\n]*rx-dropped (\d+), rx-errors (\d+)[^\r\n]*?(?:missed (\d+)[^\r\n]*)?\r?\n`, time.Minute)
	c := nicExpect(t, client, `nictest: `+q+` blast sent (\d+) frames \d+ bytes in [\d.]+ s: (\d+) frames/s ([\d.]+) MB/s, (\d+) queue-full back-offs, server got (-?\d+)\r?\n`, 5*time.Minute)
	got, _ := strconv.Atoi(s[1])
	lost, _ := strconv.Atoi(s[4])
	dropped, _ := strconv.Atoi(counters[1])
	missed, _ := strconv.Atoi(counters[3])
	// The wire has no flow control: frames the receiver's queue had no
	// room for are dropped, but each must be counted (the queue's
	// RxDropped, the device's missed-packet count; these may also count a
	// dropped probe or done frame). Nothing may arrive corrupt, nothing
	// may be counted as a receive error on a clean wire.
	accounted := lost <= dropped+missed
	if lossy {
		accounted = true
	}
	if s[2] != strconv.Itoa(blast) || s[3] != "0" || got < blast/20 || !accounted || counters[2] != "0" {
		t.Errorf("%s server: %s\n%s", name, s[0], counters[0])
	}
	if c[1] != strconv.Itoa(blast) || c[5] != s[1] {
		t.Errorf("%s client: %s", name, c[0])
	}
	// The receiver's rate runs from its first to its last data frame, so
	// frames buffered upstream (QEMU's queues, the socket) inflate it; the
	// sender's counts frames the wire may then drop. The lower of the two
	// is the wire's figure.
	rx, _ := strconv.Atoi(s[7])
	tx, _ := strconv.Atoi(c[2])
	wire := min(rx, tx)
	t.Logf("%s one way, %d-byte frames: wire %d frames/s %.2f MB/s (receiver %s frames/s %s MB/s, %d of %d arrived; sender %s frames/s %s MB/s, %s queue-full back-offs); ping median rtt %s",
		name, nicBlastSize, wire, float64(wire)*nicBlastSize/1e6, s[7], s[8], got, blast, c[2], c[3], c[4], ping[3])
}

// nicPairQEMU boots a server and a client under QEMU TCG, each with one
// NIC per device in devices, the i-th NICs of both linked by their own
// -netdev socket (listen/connect), runs doppel.nictest on every NIC at
// once and checks each link.
func nicPairQEMU(t *testing.T, machine, flags string, devices, names []string, blast int) (server, client *Machine) {
	var ports []int
	for range devices {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, port)
	}
	boot := func(role, netdev string, id int, cmdline string) *Machine {
		var extra []string
		if machine != "" {
			extra = append(extra, "-machine", machine)
		}
		for i, dev := range devices {
			extra = append(extra, "-netdev", fmt.Sprintf("socket,id=n%d,%s=127.0.0.1:%d", i, netdev, ports[i]),
				"-device", fmt.Sprintf("%s,netdev=n%d,mac=52:54:00:00:%02x:%02x", dev, i, i, id))
		}
		m, err := StartQEMU(t.Name()+"-"+role, QEMUConfig{Cmdline: cmdline + " doppel.nictest.nic=all " + flags, SMP: 1, MemMiB: 512, Extra: extra})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				// The NICs' counters, for the log: where did frames stop?
				m.Type("nic\r")
				time.Sleep(2 * time.Second)
				t.Logf("%s after the failure:\n%s", role, m.Tail(1500))
			}
			m.Close()
		})
		return m
	}
	server = boot("serve", "listen", 1, "doppel.nictest=serve")
	for i, name := range names {
		nicExpect(t, server, fmt.Sprintf(`nic: %s at [0-9a-f:.]+: mac 52:54:00:00:%02x:01 link up`, name, i), 2*time.Minute)
	}
	for _, name := range names {
		nicExpect(t, server, `nictest: `+name+` serving`, time.Minute)
	}
	client = boot("client", "connect", 2, fmt.Sprintf("doppel.nictest=ping:%d:%d,blast:%d:%d", nicPings, nicPingSize, blast, nicBlastSize))
	for i, name := range names {
		nicExpect(t, client, fmt.Sprintf(`nic: %s at [0-9a-f:.]+: mac 52:54:00:00:%02x:02 link up`, name, i), 2*time.Minute)
	}
	for _, name := range names {
		// QEMU's e1000 hands frames to its netdev without a completion
		// callback, so when the peer falls behind QEMU drops them past
		// its 10000-frame queue (net/queue.c), unseen by either driver;
		// virtio-net transmits with a callback, so its wire is lossless.
		lossy := strings.HasPrefix(name, "e1000")
		checkNICRun(t, server, client, name, nicPings, blast, lossy)
	}
	client.Type("nic\r")
	for i, name := range names {
		nicExpect(t, client, fmt.Sprintf(`%s: mac 52:54:00:00:%02x:02 link up mtu 1500`, name, i), time.Minute)
	}
	return server, client
}

func TestQEMUNICE1000(t *testing.T) {
	server, client := nicPairQEMU(t, "", "", []string{"e1000"}, []string{"e1000-0"}, 20000)
	nicExpect(t, server, `nic: e1000-0 at 00:03.0: mac 52:54:00:00:00:01 link up, irq 11`, time.Minute)
	client.Type("pci\r")
	nicExpect(t, client, `\d+ functions \(mechanism #1 \(no MCFG\)\)`, time.Minute)
	nicExpect(t, client, `00:03.0 8086:100e class 020000 e1000 \(82540EM\) irq:INTA irq 11 bar0 mem32 0x[0-9a-f]+\+128K bar1 io 0x[0-9a-f]+\+64`, time.Minute)
}

// TestQEMUNICVirtio: modern-only virtio-net (disable-legacy=on, so the
// driver must use the virtio 1.x PCI capabilities) on INTx. (With
// doppel.nic.msi=1 it uses MSI-X through the layer's /dev/msi; that path
// passed most runs but hung the serving instance in about 3 of 20, so it
// is off by default and not tested here until that is understood.)
func TestQEMUNICVirtio(t *testing.T) {
	server, _ := nicPairQEMU(t, "", "", []string{"virtio-net-pci,disable-legacy=on"}, []string{"virtio-net-0"}, 20000)
	nicExpect(t, server, `nic: virtio-net-0 at 00:03.0: mac 52:54:00:00:00:01 link up, irq 11`, time.Minute)
}

// TestQEMUNICQ35Both: on a q35 machine (PCIe, ECAM from the MCFG) each
// instance has an e1000 and a modern virtio-net sharing one INTx line,
// each linked to its twin on
// the other instance; both links carry their ping and blast at once.
func TestQEMUNICQ35Both(t *testing.T) {
	server, _ := nicPairQEMU(t, "q35", "", []string{"e1000", "virtio-net-pci,disable-legacy=on"},
		[]string{"e1000-0", "virtio-net-1"}, 5000)
	nicExpect(t, server, `nic: e1000-0 at 00:02.0: mac 52:54:00:00:00:01 link up, irq 11`, time.Minute)
	nicExpect(t, server, `nic: virtio-net-1 at 00:03.0: mac 52:54:00:00:01:01 link up, irq 11`, time.Minute)
	server.Type("pci\r")
	nicExpect(t, server, `\d+ functions \(ECAM at 0x[0-9a-f]+ buses 0-255 \(MCFG\)\)`, time.Minute)
}

// Bochs pair: few frames, as Bochs polls its network backend once per
// millisecond of emulated time (about 1,000 frames a second).
const (
	bochsPings = 10
	bochsBlast = 300
)

// freeUDPBase finds a base port with n consecutive free UDP ports.
func freeUDPBase(n int) (int, error) {
	for try := 0; try < 50; try++ {
		base := 20000 + rand.Intn(20000)*2
		var conns []net.PacketConn
		ok := true
		for p := base; p < base+n; p++ {
			c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d free UDP ports in a row", n)
}

// startBxhub starts Bochs's hub for n instances (an e1000 with
// ethmod=socket, ethdev=base+2i each) and returns the base port; the
// hub is stopped when the test ends.
func startBxhub(t *testing.T, n int) int {
	t.Helper()
	if _, err := exec.LookPath("bxhub"); err != nil {
		t.Fatalf("bxhub (Debian bochs package) not installed: %v", err)
	}
	base, err := freeUDPBase(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	hub := exec.Command("bxhub", fmt.Sprintf("-ports=%d", n), fmt.Sprintf("-base=%d", base))
	hubLog, err := os.Create(filepath.Join(repoRoot(), "build", "qemu-test", strings.ReplaceAll(t.Name(), "/", "_")+"-bxhub.log"))
	if err != nil {
		t.Fatal(err)
	}
	hub.Stdout, hub.Stderr = hubLog, hubLog
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hub.Process.Kill()
		hub.Wait()
		hubLog.Close()
	})
	return base
}

// TestBochsNICE1000 links two doppel instances under Bochs through bxhub
// (each Bochs e1000 with ethmod=socket on its own hub port pair) and runs
// a short ping and blast.
func TestBochsNICE1000(t *testing.T) {
	base := startBxhub(t, 2)
	boot := func(role string, i int, cmdline string) *Machine {
		mac := fmt.Sprintf("52:54:00:00:01:%02x", i+1)
		m, err := StartBochs(t.Name()+"-"+role, BochsConfig{
			Cmdline: cmdline, CPUs: 1, MemMiB: 256,
			Extra: fmt.Sprintf("e1000: enabled=1, mac=%s, ethmod=socket, ethdev=%d\n", mac, base+2*i),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	server := boot("serve", 0, "doppel.nictest=serve")
	client := boot("client", 1, fmt.Sprintf("doppel.nictest=ping:%d:%d,blast:%d:%d", bochsPings, nicPingSize, bochsBlast, nicBlastSize))
	nicExpect(t, server, `nic: e1000-0 at [0-9a-f:.]+: mac 52:54:00:00:01:01 link up`, 10*time.Minute)
	nicExpect(t, server, `nictest: e1000-0 serving`, time.Minute)
	nicExpect(t, client, `nic: e1000-0 at [0-9a-f:.]+: mac 52:54:00:00:01:02 link up`, 10*time.Minute)
	nicExpect(t, client, `nictest: e1000-0 peer answered`, 5*time.Minute)
	// bxhub's UDP path drops what Bochs's 1 ms polling cannot take, out
	// of any counter's sight.
	checkNICRun(t, server, client, "e1000-0", bochsPings, bochsBlast, true)
}
