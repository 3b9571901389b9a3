package qemutest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nicModels are the QEMU devices of the FT link and the names doppel gives
// their first interface.
var nicModels = []struct{ device, ifname string }{
	{"e1000", "e1000-0"},
	{"virtio-net-pci,disable-legacy=on", "virtio-net-0"}, // the driver speaks modern virtio only
}

var (
	killLine     = regexp.MustCompile(`ft: kill point (\S+) epoch (\d+)`)
	takeoverLine = regexp.MustCompile(`ft: takeover at epoch (\d+)`)
	verifyLine   = regexp.MustCompile(`verify: (ok|mismatch)`)
	syncLine     = regexp.MustCompile(`ft: initial sync: ([\d.]+) s, ([\d.]+) MB/s`)
	syncWireLine = regexp.MustCompile(`ft: initial sync: .*; ([\d.]+) MB on the wire in ([\d.]+) s \(([\d.]+) MB/s\)`)
	rawLine      = regexp.MustCompile(`ft: baseline: raw Ethernet ([\d.]+) MB/s`)
	tcpLine      = regexp.MustCompile(`ft: baseline: TCP ([\d.]+) MB/s`)
	pauseLine    = regexp.MustCompile(`ft: checkpoints: (\d+), pause p50 ([\d.]+) ms, p99 ([\d.]+) ms`)
	releaseLine  = regexp.MustCompile(`ft: output release latency: p50 ([\d.]+) ms, p99 ([\d.]+) ms`)
)

// ftPair boots a primary and a secondary doppel joined through a relay
// (QEMU -netdev socket on each side), with extra primary flags.
func ftPair(t *testing.T, dev, ifname string, r *relay, primaryFlags string) (p, s *Machine) {
	t.Helper()
	netdev := func(i int, mac string) []string {
		return []string{"-netdev", fmt.Sprintf("socket,id=ft,connect=127.0.0.1:%d", r.Port(i)),
			"-device", fmt.Sprintf("%s,netdev=ft,mac=%s", dev, mac)}
	}
	common := " doppel.ft.sim.mem=16M doppel.ft.sim.hb=50ms doppel.ft.sim.hbmiss=20 doppel.ft.sim.probe=8M"
	var err error
	p, err = StartQEMU(t.Name()+"-primary", QEMUConfig{MemMiB: 1024,
		Cmdline: "doppel.net." + ifname + "=10.9.0.1/24 doppel.ft.sim=primary" + common + " " + primaryFlags,
		Extra:   netdev(0, "52:54:00:0f:00:01")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	s, err = StartQEMU(t.Name()+"-secondary", QEMUConfig{MemMiB: 1024,
		Cmdline: "doppel.net." + ifname + "=10.9.0.2/24 doppel.ft.sim=secondary doppel.ft.peer=10.9.0.1" + common,
		Extra:   netdev(1, "52:54:00:0f:00:02")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return p, s
}

// TestQEMUFTLink runs the engine with the synthetic guest between two
// doppel kernels under QEMU TCG, for each NIC model, kills the primary's
// QEMU at protocol points and checks the secondary's takeover verifies.
func TestQEMUFTLink(t *testing.T) {
	for _, nm := range nicModels {
		for _, kill := range []string{"sync-round:1", "mid-epoch:10", "mid-group:10", "acked:10"} {
			t.Run(strings.SplitN(nm.device, ",", 2)[0]+"/"+kill, func(t *testing.T) {
				r := newRelay(t, 0, 0, 1)
				p, s := ftPair(t, nm.device, nm.ifname, r, "doppel.ft.sim.kill="+kill)
				subs, err := p.Expect(killLine, 5*time.Minute)
				if err != nil {
					t.Fatalf("primary never reached %s: %v\n%s", kill, err, p.Tail(30))
				}
				p.Close() // the primary's machine dies at the point
				killed, _ := strconv.ParseUint(subs[2], 10, 64)
				v, err := s.Expect(verifyLine, 3*time.Minute)
				if err != nil {
					t.Fatalf("no verify line: %v\n%s", err, s.Tail(30))
				}
				if v[1] != "ok" {
					t.Fatalf("verify: %s\n%s", v[1], s.Tail(30))
				}
				out := s.Output()
				tk := takeoverLine.FindStringSubmatch(out)
				switch {
				case kill == "sync-round:1":
					if tk != nil {
						t.Fatalf("took over although killed during the sync")
					}
				case tk == nil:
					t.Fatalf("no takeover after a kill at %s\n%s", kill, s.Tail(30))
				default:
					e, _ := strconv.ParseUint(tk[1], 10, 64)
					if kill == "acked:10" && e < killed {
						t.Fatalf("takeover at epoch %d, the primary had an ack for %d", e, killed)
					}
				}
				logFigures(t, p.Output(), out)
			})
		}
	}
}

// TestQEMUFTLinkLossy puts loss and reordering on the wire between the two
// machines and checks that checkpoints continue and the takeover verifies.
func TestQEMUFTLinkLossy(t *testing.T) {
	r := newRelay(t, 0.01, 0.02, 5)
	p, s := ftPair(t, "e1000", "e1000-0", r, "")
	if _, err := p.Expect(regexp.MustCompile(`ft: checkpoints: ([5-9]\d|\d{3,})`), 5*time.Minute); err != nil {
		t.Fatalf("no 50 checkpoints over the lossy wire: %v\n%s", err, p.Tail(30))
	}
	p.Close()
	v, err := s.Expect(verifyLine, 3*time.Minute)
	if err != nil || v[1] != "ok" || takeoverLine.FindString(s.Output()) == "" {
		t.Fatalf("verify %v %v\n%s", v, err, s.Tail(30))
	}
	t.Logf("relay: %d frames, %d lost, %d reordered", r.frames.Load(), r.lost.Load(), r.reordered.Load())
	if r.lost.Load() == 0 || r.reordered.Load() == 0 {
		t.Fatal("the relay injected no faults")
	}
	logFigures(t, p.Output(), s.Output())
}

// logFigures logs the run's figures: FT-link goodput (the sync) against
// the raw throughput of the same wire, TCP's, pause and release latency.
func logFigures(t *testing.T, prim, sec string) {
	last := func(re *regexp.Regexp, s string) []string {
		all := re.FindAllStringSubmatch(s, -1)
		if len(all) == 0 {
			return nil
		}
		return all[len(all)-1]
	}
	sy, sw, raw, tcp := last(syncLine, prim), last(syncWireLine, prim), last(rawLine, sec), last(tcpLine, sec)
	var w, tc float64
	if raw != nil {
		w, _ = strconv.ParseFloat(raw[1], 64)
	}
	if tcp != nil {
		tc, _ = strconv.ParseFloat(tcp[1], 64)
	}
	if sy != nil && sw != nil {
		// Goodput is the FT protocol's bytes over the sync's time; the
		// engine's own rate counts the guest's memory once.
		g, _ := strconv.ParseFloat(sw[3], 64)
		t.Logf("figures: sync %s s (guest memory at %s MB/s), %s MB on the wire at %.1f MB/s; raw wire %.1f MB/s; TCP %.1f MB/s; goodput/raw %.2f, TCP/raw %.2f",
			sy[1], sy[2], sw[1], g, w, tc, g/max(w, 0.001), tc/max(w, 0.001))
	} else if raw != nil {
		t.Logf("figures: no sync; raw wire %.1f MB/s; TCP %.1f MB/s; TCP/raw %.2f", w, tc, tc/max(w, 0.001))
	}
	if pl := last(pauseLine, prim); pl != nil {
		t.Logf("checkpoints %s, pause p50 %s ms, p99 %s ms", pl[1], pl[2], pl[3])
	}
	if rl := last(releaseLine, prim); rl != nil {
		t.Logf("release latency p50 %s ms, p99 %s ms", rl[1], rl[2])
	}
}
