package qemutest

import (
	"fmt"
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
	serveLine = regexp.MustCompile(`nictest: serve received (\d+) of (\d+) data frames \((\d+) corrupt, (-?\d+) lost\) (\d+) bytes in ([\d.]+) s: (\d+) frames/s ([\d.]+) MB/s`)
	blastLine = regexp.MustCompile(`nictest: blast sent (\d+) frames \d+ bytes in [\d.]+ s: (\d+) frames/s ([\d.]+) MB/s, (\d+) queue-full back-offs, server got (-?\d+)`)
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
	ping := expect(client, fmt.Sprintf(`nictest: ping %d frames: (\d+) replies, (\d+) corrupt, median rtt (\S+)`, nicPings), 3*time.Minute)
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
	// room for are dropped, but every one must be counted (the queue's
	// RxDropped, the device's missed-packet count), none corrupt.
	got, _ := strconv.Atoi(s[1])
	sent, _ := strconv.Atoi(s[2])
	lost, _ := strconv.Atoi(s[4])
	dropped, _ := strconv.Atoi(counters[1])
	missed, _ := strconv.Atoi(counters[3])
	if sent != blast || s[3] != "0" || got < blast/20 || lost != dropped+missed || counters[2] != "0" {
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
