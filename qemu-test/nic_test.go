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

var (
	serveLine = regexp.MustCompile(`nictest: serve received (\d+) of (\d+) data frames \((\d+) corrupt, (-?\d+) lost\) (\d+) bytes in ([\d.]+) s: (\d+) frames/s ([\d.]+) MB/s\r?\n`)
	blastLine = regexp.MustCompile(`nictest: blast sent (\d+) frames \d+ bytes in [\d.]+ s: (\d+) frames/s ([\d.]+) MB/s, (\d+) queue-full back-offs, server got (-?\d+)\r?\n`)
)

// nicPairQEMU boots a server and a client under QEMU TCG linked by
// -netdev socket (listen/connect) with the given -device, and checks the
// ping and the blast.
func nicPairQEMU(t *testing.T, device, driver string, blast int) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	boot := func(role, netdev, mac, cmdline string) *Machine {
		m, err := StartQEMU(t.Name()+"-"+role, QEMUConfig{
			Cmdline: cmdline, SMP: 1, MemMiB: 512,
			Extra: []string{"-netdev", fmt.Sprintf("socket,id=n0,%s=127.0.0.1:%d", netdev, port),
				"-device", fmt.Sprintf("%s,netdev=n0,mac=%s", device, mac)},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	expect := func(m *Machine, re string, timeout time.Duration) []string {
		t.Helper()
		subs, err := m.Expect(regexp.MustCompile(re), timeout)
		if err != nil {
			t.Fatal(err)
		}
		return subs
	}
	server := boot("serve", "listen", "52:54:00:00:00:01", "doppel.nictest=serve")
	expect(server, `nic: `+driver+`-0 at [0-9a-f:.]+: mac 52:54:00:00:00:01 link up`, 2*time.Minute)
	expect(server, `nictest: `+driver+`-0 serving`, time.Minute)
	client := boot("client", "connect", "52:54:00:00:00:02",
		fmt.Sprintf("doppel.nictest=ping:%d:%d,blast:%d:%d", nicPings, nicPingSize, blast, nicBlastSize))
	expect(client, `nic: `+driver+`-0 at [0-9a-f:.]+: mac 52:54:00:00:00:02 link up`, 2*time.Minute)
	expect(client, `nictest: `+driver+`-0 peer answered`, 2*time.Minute)
	ping := expect(client, fmt.Sprintf(`nictest: ping %d frames: (\d+) replies, (\d+) corrupt, median rtt (\S+)\r?\n`, nicPings), 3*time.Minute)
	if ping[1] != strconv.Itoa(nicPings) || ping[2] != "0" {
		t.Errorf("ping: %s", ping[0])
	}
	s, err := server.Expect(serveLine, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	counters := expect(server, driver+`-0 counters [^\r\n]*rx-dropped (\d+), rx-errors (\d+)[^\r\n]*?(?:missed (\d+)[^\r\n]*)?\r?\n`, time.Minute)
	c, err := client.Expect(blastLine, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The wire has no flow control: frames the receiver's queue had no
	// room for are dropped, but every lost one must be counted (the
	// queue's RxDropped, the device's missed-packet count; these may also
	// count a dropped probe or done frame), none corrupt.
	got, _ := strconv.Atoi(s[1])
	sent, _ := strconv.Atoi(s[2])
	lost, _ := strconv.Atoi(s[4])
	dropped, _ := strconv.Atoi(counters[1])
	missed, _ := strconv.Atoi(counters[3])
	if sent != blast || s[3] != "0" || got < blast/20 || lost > dropped+missed || counters[2] != "0" {
		t.Errorf("server: %s\n%s", s[0], counters[0])
	}
	if c[1] != strconv.Itoa(blast) || c[5] != strconv.Itoa(got) {
		t.Errorf("client: %s", c[0])
	}
	t.Logf("%s one way, %d-byte frames: %s frames/s %s MB/s at the receiver (sender: %s frames/s %s MB/s, %s queue-full back-offs); ping %s",
		driver, nicBlastSize, s[7], s[8], c[2], c[3], c[4], ping[0])
	client.Type("nic\r")
	expect(client, driver+`-0: mac 52:54:00:00:00:02 link up mtu 1500`, time.Minute)
	client.Type("pci\r")
	expect(client, `\d+ functions \(mechanism #1`, time.Minute)
}

func TestQEMUNICE1000(t *testing.T) {
	nicPairQEMU(t, "e1000", "e1000", 20000)
}

// TestQEMUNICVirtio: modern-only virtio-net (disable-legacy=on, so the
// driver must use the virtio 1.x PCI capabilities).
func TestQEMUNICVirtio(t *testing.T) {
	nicPairQEMU(t, "virtio-net-pci,disable-legacy=on", "virtio-net", 20000)
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

// TestBochsNICE1000 links two doppel instances under Bochs through bxhub
// (each Bochs e1000 with ethmod=socket on its own hub port pair) and runs
// a short ping and blast.
func TestBochsNICE1000(t *testing.T) {
	if _, err := exec.LookPath("bxhub"); err != nil {
		t.Fatalf("bxhub (Debian bochs package) not installed: %v", err)
	}
	base, err := freeUDPBase(4)
	if err != nil {
		t.Fatal(err)
	}
	hub := exec.Command("bxhub", "-ports=2", fmt.Sprintf("-base=%d", base))
	hubLog, err := os.Create(filepath.Join(repoRoot(), "build", "qemu-test", t.Name()+"-bxhub.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer hubLog.Close()
	hub.Stdout, hub.Stderr = hubLog, hubLog
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		hub.Process.Kill()
		hub.Wait()
	}()
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
	expect := func(m *Machine, re string, timeout time.Duration) []string {
		t.Helper()
		subs, err := m.Expect(regexp.MustCompile(re), timeout)
		if err != nil {
			t.Fatal(err)
		}
		return subs
	}
	server := boot("serve", 0, "doppel.nictest=serve")
	client := boot("client", 1, fmt.Sprintf("doppel.nictest=ping:%d:%d,blast:%d:%d", bochsPings, nicPingSize, bochsBlast, nicBlastSize))
	expect(server, `nic: e1000-0 at [0-9a-f:.]+: mac 52:54:00:00:01:01 link up`, 10*time.Minute)
	expect(server, `nictest: e1000-0 serving`, time.Minute)
	expect(client, `nic: e1000-0 at [0-9a-f:.]+: mac 52:54:00:00:01:02 link up`, 10*time.Minute)
	expect(client, `nictest: e1000-0 peer answered`, 5*time.Minute)
	ping := expect(client, fmt.Sprintf(`nictest: ping %d frames: (\d+) replies, (\d+) corrupt, median rtt (\S+)\r?\n`, bochsPings), 5*time.Minute)
	if ping[1] != strconv.Itoa(bochsPings) || ping[2] != "0" {
		t.Errorf("ping: %s", ping[0])
	}
	s, err := server.Expect(serveLine, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	counters := expect(server, `e1000-0 counters [^\r\n]*rx-dropped (\d+), rx-errors (\d+)[^\r\n]*?(?:missed (\d+)[^\r\n]*)?\r?\n`, time.Minute)
	c, err := client.Expect(blastLine, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := strconv.Atoi(s[1])
	lost, _ := strconv.Atoi(s[4])
	dropped, _ := strconv.Atoi(counters[1])
	missed, _ := strconv.Atoi(counters[3])
	// bxhub's UDP path drops what Bochs's 1 ms polling cannot take, out
	// of any counter's sight: the driver must account for at least its own
	// drops, and deliver nothing corrupt.
	if s[2] != strconv.Itoa(bochsBlast) || s[3] != "0" || got < bochsBlast/20 || lost < dropped+missed || counters[2] != "0" {
		t.Errorf("server: %s\n%s", s[0], counters[0])
	}
	if c[5] != s[1] {
		t.Errorf("client: %s", c[0])
	}
	t.Logf("e1000 under Bochs via bxhub, one way, %d-byte frames: %s frames/s %s MB/s at the receiver (sender %s frames/s); %s",
		nicBlastSize, s[7], s[8], c[2], ping[0])
}
