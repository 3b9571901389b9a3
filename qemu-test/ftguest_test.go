package qemutest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The protected guest across two doppel machines (issue 12) under QEMU
// TCG with AMD-V: the primary runs testkernels/ftticks, which prints
// numbered lines with a checksum of memory it writes; the secondary
// mirrors it over the FT link (virtio-net through the relay) and takes
// over when the primary's QEMU is killed.

var (
	tickLine     = regexp.MustCompile(`ftticks: tick (\d+) sum (\d+)\r*\n`)
	ftKillLine   = regexp.MustCompile(`ft: kill point (\S+) epoch (\d+)`)
	ftTakeover   = regexp.MustCompile(`ft: takeover at epoch (\d+)`)
	ftProtected  = regexp.MustCompile(`ft: protection: protected`)
	ftFigures    = regexp.MustCompile(`ft: checkpoints: [^\r\n]*`)
	ftFailedOver = regexp.MustCompile(`ft: protection: failed over \(guest running from epoch (\d+), ([\d.]+) ms`)
)

// tickSum is the sum ftticks prints after tick n: word
// (k mod 64)*1024 + (k/64 mod 1024) of its area holds the last k written
// there, summed modulo 2^32.
func tickSum(n int) uint32 {
	area := map[int]uint32{}
	for k := 1; k <= n; k++ {
		area[(k%64)*1024+(k/64)%1024] = uint32(k)
	}
	var s uint32
	for _, v := range area {
		s += v
	}
	return s
}

type tick struct {
	n   int
	sum uint32
}

func ticks(out string) []tick {
	var ts []tick
	for _, m := range tickLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		s, _ := strconv.ParseUint(m[2], 10, 32)
		ts = append(ts, tick{n, uint32(s)})
	}
	return ts
}

// ftGuestPair boots the primary (with a kill point) and the secondary.
func ftGuestPair(t *testing.T, kill string) (p, s *Machine) {
	t.Helper()
	r := newRelay(t, 0, 0, 1)
	start := func(side int, flags string) *Machine {
		// A 2 s heartbeat deadline: TCP over the emulated NICs on a loaded
		// host can be silent for half a second (a retransmission timeout).
		cmd := "doppel.reserve=128M doppel.guest=ftticks doppel.guest.mem=32M doppel.ft.hb=50ms doppel.ft.hbmiss=40 " +
			fmt.Sprintf("doppel.net.virtio-net-0=10.9.0.%d/24 ", side+1) + flags
		m, err := StartQEMU(fmt.Sprintf("%s-%d", t.Name(), side), QEMUConfig{MemMiB: 1024, SMP: 2, CPU: "max", Cmdline: cmd,
			Modules: []Module{{Path: imagePath("ftticks.bin"), Name: "ftticks"}},
			Extra: []string{"-netdev", fmt.Sprintf("socket,id=ft,connect=127.0.0.1:%d", r.Port(side)),
				"-device", fmt.Sprintf("virtio-net-pci,disable-legacy=on,netdev=ft,mac=52:54:00:0f:00:%02d", side+1)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	p = start(0, "doppel.ft.role=primary doppel.ft.kill="+kill)
	s = start(1, "doppel.ft.role=secondary doppel.ft.peer=10.9.0.1")
	return p, s
}

// TestQEMUSVMFTGuest kills the primary at a point of the protocol and
// checks that the guest continues on the secondary: its numbered lines
// go on with none missing (a line repeated only from the last epoch,
// counted), every line's checksum of guest memory is right, and its TSC
// never goes backwards.
func TestQEMUSVMFTGuest(t *testing.T) {
	for _, kill := range []string{"paused:40", "mid-epoch:40", "mid-group:40", "acked:40", "released:40"} {
		t.Run(kill, func(t *testing.T) {
			p, s := ftGuestPair(t, kill)
			if _, err := p.Expect(ftProtected, 5*time.Minute); err != nil {
				t.Fatalf("primary never protected: %v\n%s\nsecondary:\n%s", err, p.Tail(40), s.Tail(20))
			}
			if _, err := p.Expect(ftKillLine, 5*time.Minute); err != nil {
				t.Fatalf("primary never reached %s: %v\n%s", kill, err, p.Tail(40))
			}
			p.Close()
			pout := p.Output()
			if _, err := s.Expect(ftTakeover, 3*time.Minute); err != nil {
				t.Fatalf("no takeover: %v\n%s", err, s.Tail(40))
			}
			fo, err := s.Expect(ftFailedOver, time.Minute)
			if err != nil {
				t.Fatalf("guest not running on the secondary: %v\n%s", err, s.Tail(40))
			}
			prim := ticks(pout)
			if len(prim) == 0 {
				t.Fatalf("the primary released no line\n%s", p.Tail(40))
			}
			last := prim[len(prim)-1].n
			// The secondary runs the guest on: wait for 30 lines past the
			// primary's last.
			var sec []tick
			deadline := time.Now().Add(3 * time.Minute)
			for {
				out := s.Output()
				i := ftTakeover.FindStringIndex(out)
				if before := ticks(out[:i[0]]); len(before) > 0 {
					t.Fatalf("the secondary printed guest lines before the takeover: %v", before)
				}
				sec = ticks(out[i[1]:])
				if len(sec) > 0 && sec[len(sec)-1].n >= last+30 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the guest did not go on on the secondary (primary's last line %d)\n%s", last, s.Tail(40))
				}
				time.Sleep(time.Second)
			}
			// Output commit: nothing of the guest on the primary's console
			// before the secondary had a complete copy.
			if i, j := ftProtected.FindStringIndex(pout), tickLine.FindStringIndex(pout); j[0] < i[0] {
				t.Errorf("guest output released before the guest was protected")
			}
			for i, tk := range append(append([]tick(nil), prim...), sec...) {
				if want := tickSum(tk.n); tk.sum != want {
					t.Errorf("line %d: tick %d sum %d, want %d (guest memory is wrong)", i, tk.n, tk.sum, want)
				}
			}
			for i := range prim {
				if prim[i].n != i+1 {
					t.Fatalf("primary: line %d is tick %d", i+1, prim[i].n)
				}
			}
			if sec[0].n > last+1 {
				t.Fatalf("lines %d..%d missing: the primary released up to %d, the secondary went on at %d", last+1, sec[0].n-1, last, sec[0].n)
			}
			for i := 1; i < len(sec); i++ {
				if sec[i].n != sec[i-1].n+1 {
					t.Fatalf("secondary: tick %d after tick %d", sec[i].n, sec[i-1].n)
				}
			}
			repeats := last - sec[0].n + 1
			if strings.Contains(pout, "TSC went backwards") || strings.Contains(s.Output(), "TSC went backwards") {
				t.Error("the guest's TSC went backwards")
			}
			// A repeat is a line of the last epoch: released by the primary
			// after it opened the epoch the secondary resumes from. At one
			// line per ~20 ms and 50 ms epochs that is a few lines; more
			// than 25 means the replay started much too early.
			if repeats > 25 {
				t.Errorf("%d lines repeated", repeats)
			}
			if f := lastMatch(ftFigures, pout); f != nil {
				t.Logf("primary: %s", f[0])
			}
			t.Logf("kill at %s: primary released ticks 1..%d; secondary took over at epoch %s, %s ms after the primary was last heard, went on at tick %d (%d repeated), ran to tick %d",
				kill, last, fo[1], fo[2], sec[0].n, max(repeats, 0), sec[len(sec)-1].n)
		})
	}
}

func lastMatch(re *regexp.Regexp, s string) []string {
	all := re.FindAllStringSubmatch(s, -1)
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

// TestQEMUSVMFTGuestSyncKill kills the primary during the initial sync:
// the secondary holds no complete copy, so it must not take over (nor run
// the guest), and offers itself again.
func TestQEMUSVMFTGuestSyncKill(t *testing.T) {
	p, s := ftGuestPair(t, "sync-round:1")
	if _, err := p.Expect(ftKillLine, 5*time.Minute); err != nil {
		t.Fatalf("primary never reached the sync: %v\n%s", err, p.Tail(40))
	}
	p.Close()
	if _, err := s.Expect(regexp.MustCompile(`ft: protection: mirroring \(no complete copy; connecting to the primary again\)`), 3*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, s.Tail(40))
	}
	out := s.Output()
	if ftTakeover.MatchString(out) || tickLine.MatchString(out) {
		t.Fatalf("the secondary took over or ran the guest without a complete copy\n%s", s.Tail(40))
	}
	if tickLine.MatchString(p.Output()) {
		t.Errorf("the primary released guest output before it was protected")
	}
}
