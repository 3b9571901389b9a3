package qemutest

import (
	"fmt"
	"regexp"
	"testing"
	"time"
)

// startFTNetNode boots one doppel of an FT pair protecting the Linux
// guest: the FT link on its first virtio-net NIC (the hub, 10.9.0.side+1),
// the guest's NIC bridged to its second one on the outside LAN.
func startFTNetNode(t *testing.T, h *hub, l *lan, side int, flags string) *Machine {
	t.Helper()
	name := fmt.Sprintf("%s-%d", t.Name(), side)
	cmd := "doppel.reserve=320M doppel.guest=vmlinuz doppel.guest.initrd=initramfs doppel.guest.mem=192M " +
		"doppel.ft.hb=50ms doppel.ft.hbmiss=40 doppel.guest.net=virtio-net-1 doppel.guest.ip=" + guestIP + " " +
		fmt.Sprintf("doppel.net.virtio-net-0=10.9.0.%d/24 ", side+1) + flags
	_, iso, err := buildISO(name, cmd, guestNetModules(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := runQEMU(name, []string{"-cdrom", iso, "-boot", "d", "-smp", "2", "-m", "1024", "-cpu", "max",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-netdev", fmt.Sprintf("socket,id=ft,connect=127.0.0.1:%d", h.Port(side)),
		"-device", fmt.Sprintf("virtio-net-pci,disable-legacy=on,netdev=ft,mac=52:54:00:0f:00:%02d", side+1),
		"-netdev", fmt.Sprintf("socket,id=out,connect=127.0.0.1:%d", l.Port(side)),
		"-device", fmt.Sprintf("virtio-net-pci,disable-legacy=on,netdev=out,mac=52:54:00:0e:00:%02d", side+1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestQEMUSVMFTGuestNet is issue 12's network check: two doppel under
// QEMU TCG with AMD-V protect the Linux guest, whose NIC is bridged on
// both to the outside LAN; the test's own stack holds a TCP connection to
// the guest's numbered stream, kills the primary's QEMU while it reads,
// and reads on through the failover: the same connection, no number
// missing or repeated.
func TestQEMUSVMFTGuestNet(t *testing.T) {
	h := newHub(t)
	l, port := newLAN(t, 2)
	host := outsideHost(t, port)
	p := startFTNetNode(t, h, l, 0, "doppel.ft.role=primary")
	s := startFTNetNode(t, h, l, 1, "doppel.ft.role=secondary doppel.ft.peer=10.9.0.1")
	if _, err := p.Expect(ftProtected, 20*time.Minute); err != nil {
		t.Fatalf("primary never protected: %v\n%s\nsecondary:\n%s", err, p.Tail(40), s.Tail(20))
	}
	if err := p.ExpectString("workload: serving the numbered stream", 40*time.Minute); err != nil {
		t.Fatalf("%v\nsecondary:\n%s", err, s.Tail(20))
	}
	c := dialGuest(t, host, streamPort, 5*time.Minute)
	defer c.Close()
	sr := newStreamReader(c)
	t0 := time.Now()
	if _, err := sr.read(c, 100, 5*time.Minute); err != nil {
		t.Fatalf("stream on the primary: %v", err)
	}
	t.Logf("100 numbers through output commit in %v", time.Since(t0).Round(time.Millisecond))
	if f := lastMatch(ftFigures, p.Output()); f != nil {
		t.Logf("primary: %s", f[0])
	}
	p.Close()
	before := sr.next - 1
	// Read on; the longest wait between two lines from here is the gap
	// the outside sees (the host may hold some lines the primary had
	// released before it died).
	sr.maxGap = 0
	if _, err := sr.read(c, 200, 5*time.Minute); err != nil {
		t.Fatalf("stream on the secondary: %v\n%s", err, s.Tail(40))
	}
	fo, err := s.Expect(ftFailedOver, time.Minute)
	if err != nil {
		t.Fatalf("no failover line: %v\n%s", err, s.Tail(40))
	}
	if !regexp.MustCompile(`takeover: gratuitous ARP: ` + regexp.QuoteMeta(guestIP)).MatchString(s.Output()) {
		t.Error("no gratuitous ARP at the takeover")
	}
	t.Logf("killed the primary after reading number %d; the stream went on in order on the same connection to %d; longest wait %v, before number %d; guest running from epoch %s, %s ms after the primary was last heard",
		before, sr.next-1, sr.maxGap.Round(time.Millisecond), sr.gapAt, fo[1], fo[2])
}
