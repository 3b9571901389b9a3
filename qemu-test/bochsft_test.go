package qemutest

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestBochsFTSync runs the FT engine with a small synthetic guest between
// two doppel instances under Bochs (VT-x CPU models, e1000s joined by
// bxhub): the baseline measures the emulated wire, the primary completes
// the initial sync of the guest and the pair checkpoints on. Bochs polls
// its network back end once per emulated millisecond (about 1,000 frames a
// second), so the guest is small, TCP's window small and the heartbeat
// deadline generous (10 s).
//
// The ether case runs the session on net/ethstream instead of TCP (the
// secondary's doppel.ft.transport), whose window is not limited: bxhub's
// lost bursts are its loss recovery's to handle.
func TestBochsFTSync(t *testing.T) {
	for _, transport := range []string{"tcp", "ether"} {
		// The sync takes 10-40 s of host time; a session that cannot
		// start (a livelock of stale rendezvous once held one for good)
		// must fail the test in minutes, not hold CI for twenty.
		t.Run(transport, func(t *testing.T) { bochsFTSync(t, 6*time.Minute, transport) })
	}
}

func bochsFTSync(t *testing.T, syncTimeout time.Duration, transport string) {
	base := startBxhub(t, 2)
	// The wire drops most of a burst (bxhub's UDP socket overflows while
	// Bochs polls it): TCP's window is kept to 64 KiB, about 45 frames.
	common := " doppel.ft.sim.mem=4M doppel.ft.sim.rate=50 doppel.ft.sim.epoch=100ms" +
		" doppel.ft.sim.hb=200ms doppel.ft.sim.hbmiss=50 doppel.ft.sim.probe=512K doppel.net.tcp.buf=64K"
	boot := func(role string, i int, flags string) *Machine {
		mac := fmt.Sprintf("52:54:00:0f:01:%02x", i+1)
		m, err := StartBochs(t.Name()+"-"+role, BochsConfig{
			Cmdline: fmt.Sprintf("doppel.net.e1000-0=10.9.0.%d/24 doppel.ft.sim=%s%s %s", i+1, role, common, flags),
			CPUs:    1, MemMiB: 256,
			Extra: fmt.Sprintf("e1000: enabled=1, mac=%s, ethmod=socket, ethdev=%d\n", mac, base+2*i),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				// Where did the link stop? The NIC and TCP counters.
				m.Type("net\r")
				time.Sleep(20 * time.Second)
				m.Type("ft link\r")
				time.Sleep(20 * time.Second)
				t.Logf("%s after the failure:\n%s", role, m.Tail(2000))
			}
			m.Close()
		})
		return m
	}
	p := boot("primary", 0, "")
	s := boot("secondary", 1, "doppel.ft.peer=10.9.0.1 doppel.ft.transport="+transport)
	sub, err := p.Expect(syncLine, syncTimeout)
	if err != nil {
		t.Fatalf("no initial sync: %v\nsecondary:\n%s", err, s.Tail(1500))
	}
	secs, _ := strconv.ParseFloat(sub[1], 64)
	if _, err := p.Expect(regexp.MustCompile(`ft: checkpoints: ([5-9]|\d{2,}),`), 5*time.Minute); err != nil {
		t.Fatalf("no checkpoints after the sync: %v", err)
	}
	out := s.Output()
	raw, tcp := rawLine.FindStringSubmatch(out), tcpLine.FindStringSubmatch(out)
	if raw == nil || tcp == nil {
		t.Errorf("no baseline figures on the secondary:\n%s", s.Tail(1500))
	}
	if transport == "ether" {
		if etherLine.FindString(out) == "" {
			t.Errorf("no ether stream baseline on the secondary:\n%s", s.Tail(1500))
		}
		if line := etherStats.FindString(out); line != "" {
			t.Logf("secondary's stream: %s", line)
		}
	}
	t.Logf("Bochs e1000 over bxhub (%s): initial sync of 4 MiB in %.1f s", transport, secs)
	logFigures(t, p.Output(), out)
}
