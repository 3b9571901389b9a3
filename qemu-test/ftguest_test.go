package qemutest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
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
	ftReplay     = regexp.MustCompile(`ft: takeover at epoch \d+: generation (\d+), replaying output \[(\d+),(\d+)\), the last epoch's from (\d+), the one before's from (\d+)`)
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

// ftGuestPair boots the primary (with a kill point) and the secondary,
// which runs the session over the given transport ("" for the default).
func ftGuestPair(t *testing.T, kill, transport string) (p, s *Machine) {
	t.Helper()
	return ftGuestPairCPUs(t, kill, transport, 2)
}

// ftGuestPairCPUs is ftGuestPair with secondaryCPUs CPUs on the secondary
// (the primary has two: its vCPU runs off CPU 0 under QEMU TCG).
func ftGuestPairCPUs(t *testing.T, kill, transport string, secondaryCPUs int) (p, s *Machine) {
	t.Helper()
	r := newRelay(t, 0, 0, 1)
	start := func(side int, flags string) *Machine {
		smp := 2
		if side == 1 {
			smp = secondaryCPUs
		}
		// A 2 s heartbeat deadline: TCP over the emulated NICs on a loaded
		// host can be silent for half a second (a retransmission timeout).
		cmd := "doppel.reserve=128M doppel.guest=ftticks doppel.guest.mem=32M doppel.ft.hb=50ms doppel.ft.hbmiss=40 " +
			fmt.Sprintf("doppel.net.virtio-net-0=10.9.0.%d/24 ", side+1) + flags
		m, err := StartQEMU(fmt.Sprintf("%s-%d", t.Name(), side), QEMUConfig{MemMiB: 1024, SMP: smp, CPU: "max", Cmdline: cmd,
			Modules: []Module{{Path: imagePath("ftticks.bin"), Name: "ftticks"}},
			Extra: []string{"-netdev", fmt.Sprintf("socket,id=ft,connect=127.0.0.1:%d", r.Port(side)),
				"-device", fmt.Sprintf("virtio-net-pci,disable-legacy=on,netdev=ft,mac=52:54:00:0f:00:%02d", side+1)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	pflags := "doppel.ft.role=primary"
	if kill != "" {
		pflags += " doppel.ft.kill=" + kill
	}
	p = start(0, pflags)
	sec := "doppel.ft.role=secondary doppel.ft.peer=10.9.0.1"
	if transport != "" {
		sec += " doppel.ft.transport=" + transport
	}
	s = start(1, sec)
	return p, s
}

// TestQEMUSVMFTGuest kills the primary at a point of the protocol and
// checks that the guest continues on the secondary: its numbered lines
// go on with none missing (a line repeated only from the last epoch,
// counted), every line's checksum of guest memory is right, and its TSC
// never goes backwards.
func TestQEMUSVMFTGuest(t *testing.T) {
	for _, name := range []string{"paused:40", "mid-epoch:40", "mid-group:40", "acked:40", "released:40", "ether/mid-group:40"} {
		t.Run(name, func(t *testing.T) {
			transport, kill, ok := strings.Cut(name, "/")
			if !ok {
				transport, kill = "", name
			}
			p, s := ftGuestPair(t, kill, transport)
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
			checkGuestState(t, pout, s.Output())
			checkReplay(t, s, repeats, 2)
			if transport == "ether" && !strings.Contains(pout, "(ether) connected") {
				t.Errorf("the session did not run on the ether stream:\n%s", p.Tail(40))
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
	p, s := ftGuestPair(t, "sync-round:1", "")
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

// hub joins two QEMU `-netdev socket,connect=` back ends like relay, but
// a side may reconnect (a restarted machine): frames go to the other
// side's current connection, and are dropped while it has none.
type hub struct {
	ln   [2]net.Listener
	mu   sync.Mutex
	conn [2]net.Conn
}

func newHub(t *testing.T) *hub {
	h := &hub{}
	for i := range h.ln {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.ln[i] = l
		t.Cleanup(func() { l.Close() })
		go h.accept(i)
	}
	return h
}

func (h *hub) Port(i int) int { return h.ln[i].Addr().(*net.TCPAddr).Port }

func (h *hub) accept(i int) {
	for {
		c, err := h.ln[i].Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		if old := h.conn[i]; old != nil {
			old.Close()
		}
		h.conn[i] = c
		h.mu.Unlock()
		go h.forward(i, c)
	}
}

// forward copies frames (4-byte big-endian length, then the frame) from
// side i's connection c to the other side.
func (h *hub) forward(i int, c net.Conn) {
	defer c.Close()
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		f := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
		copy(f, hdr[:])
		if _, err := io.ReadFull(c, f[4:]); err != nil {
			return
		}
		h.mu.Lock()
		dst := h.conn[1-i]
		h.mu.Unlock()
		if dst != nil {
			dst.Write(f) // a closed peer drops the frame, as a dead machine's NIC
		}
	}
}

// startFTNode boots one doppel of the pair on side (0: 10.9.0.1, 1:
// 10.9.0.2) of the hub.
func startFTNode(t *testing.T, name string, h *hub, side int, flags string) *Machine {
	t.Helper()
	cmd := "doppel.reserve=128M doppel.guest=ftticks doppel.guest.mem=32M doppel.ft.hb=50ms doppel.ft.hbmiss=40 " +
		fmt.Sprintf("doppel.net.virtio-net-0=10.9.0.%d/24 ", side+1) + flags
	m, err := StartQEMU(t.Name()+"-"+name, QEMUConfig{MemMiB: 1024, SMP: 2, CPU: "max", Cmdline: cmd,
		Modules: []Module{{Path: imagePath("ftticks.bin"), Name: "ftticks"}},
		Extra: []string{"-netdev", fmt.Sprintf("socket,id=ft,connect=127.0.0.1:%d", h.Port(side)),
			"-device", fmt.Sprintf("virtio-net-pci,disable-legacy=on,netdev=ft,mac=52:54:00:0f:00:%02d", side+1)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// afterTakeover returns the ticks a node printed after its takeover line
// (nil if it has not taken over), failing if it printed any before.
func afterTakeover(t *testing.T, m *Machine) []tick {
	t.Helper()
	out := m.Output()
	i := ftTakeover.FindStringIndex(out)
	if i == nil {
		if ts := ticks(out); len(ts) > 0 {
			t.Fatalf("%s printed guest lines without taking over", m.name)
		}
		return nil
	}
	if ts := ticks(out[:i[0]]); len(ts) > 0 {
		t.Fatalf("%s printed guest lines before its takeover", m.name)
	}
	return ticks(out[i[1]:])
}

// waitTicks waits until m has printed a line numbered at least n after
// its takeover.
func waitTicks(t *testing.T, m *Machine, n int) []tick {
	t.Helper()
	return waitTicksFor(t, m, n, 3*time.Minute)
}

func waitTicksFor(t *testing.T, m *Machine, n int, d time.Duration) []tick {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ts := afterTakeover(t, m)
		if len(ts) > 0 && ts[len(ts)-1].n >= n {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no line %d after its takeover\n%s", m.name, n, m.Tail(40))
		}
		time.Sleep(time.Second)
	}
}

// checkSeam checks that the lines after a takeover go on from the lines
// before with none missing and returns how many were repeated.
func checkSeam(t *testing.T, before, after []tick) int {
	t.Helper()
	last := before[len(before)-1].n
	if after[0].n > last+1 {
		t.Fatalf("lines %d..%d missing: released up to %d, went on at %d", last+1, after[0].n-1, last, after[0].n)
	}
	for i := 1; i < len(after); i++ {
		if after[i].n != after[i-1].n+1 {
			t.Fatalf("tick %d after tick %d", after[i].n, after[i-1].n)
		}
	}
	for _, tk := range after {
		if want := tickSum(tk.n); tk.sum != want {
			t.Fatalf("tick %d sum %d, want %d (guest memory is wrong)", tk.n, tk.sum, want)
		}
	}
	return last - after[0].n + 1
}

// checkReplay checks a promoted node's takeover line: its generation (its
// primary's plus one), and that lines repeated at the seam (repeats > 0)
// come only from the old primary's last release (issue 12: "a line
// repeated is allowed only from the last epoch before the failover"):
// the replay starts no earlier than the output of the epoch before the
// last committed one, since the primary sends an epoch's END before it
// has handled the ACK that releases the one before (ftmirror.Takeover).
// Before the RELEASE frame, a takeover after a resync replayed some 20
// epochs.
// checkGuestState fails the test if ftticks reported, on any machine, a
// TSC that went backwards or debug registers that lost their values.
func checkGuestState(t *testing.T, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		for _, lost := range []string{"TSC went backwards", "debug registers lost"} {
			if strings.Contains(o, "ftticks: "+lost) {
				t.Errorf("the guest's %s", lost)
			}
		}
	}
}

func checkReplay(t *testing.T, m *Machine, repeats, gen int) {
	t.Helper()
	f := ftReplay.FindStringSubmatch(m.Output())
	if f == nil {
		t.Fatalf("%s: no takeover line with the replay range", m.name)
	}
	var g int
	var from, end, last, prev uint64
	fmt.Sscan(f[1], &g)
	fmt.Sscan(f[2], &from)
	fmt.Sscan(f[3], &end)
	fmt.Sscan(f[4], &last)
	fmt.Sscan(f[5], &prev)
	if g != gen {
		t.Errorf("%s took over as generation %d, want %d", m.name, g, gen)
	}
	if repeats > 0 && from < prev {
		t.Errorf("%s: %d lines repeated from a replay at %d, before the output of the last two epochs at %d (of [%d,%d))", m.name, repeats, from, prev, from, end)
	}
	t.Logf("%s: generation %d, replay [%d,%d), the last two epochs' output from %d and %d, %d lines repeated", m.name, g, from, end, prev, last, max(repeats, 0))
}

// TestQEMUSVMFTGuestResync: after a failover the old primary's machine
// boots again as the new secondary, is resynced while the guest runs on
// the promoted node (F7), and takes the guest back when that node dies
// in its turn: the numbered lines go on across both failovers.
func TestQEMUSVMFTGuestResync(t *testing.T) {
	h := newHub(t)
	a := startFTNode(t, "a", h, 0, "doppel.ft.role=primary doppel.ft.kill=acked:40")
	b := startFTNode(t, "b", h, 1, "doppel.ft.role=secondary doppel.ft.peer=10.9.0.1 doppel.ft.kill=mid-epoch:1")
	if _, err := a.Expect(ftKillLine, 5*time.Minute); err != nil {
		t.Fatalf("a never reached its kill point: %v\n%s\nb:\n%s", err, a.Tail(40), b.Tail(20))
	}
	a.Close()
	aTicks := ticks(a.Output())
	if _, err := b.Expect(ftFailedOver, 3*time.Minute); err != nil {
		t.Fatalf("b did not take over: %v\n%s", err, b.Tail(40))
	}
	// a's machine comes back as the new secondary of b.
	a2 := startFTNode(t, "a2", h, 0, "doppel.ft.role=secondary doppel.ft.peer=10.9.0.2")
	if _, err := b.Expect(ftProtected, 5*time.Minute); err != nil {
		t.Fatalf("b never protected by a2: %v\n%s\na2:\n%s", err, b.Tail(40), a2.Tail(20))
	}
	if _, err := b.Expect(ftKillLine, 5*time.Minute); err != nil {
		t.Fatalf("b never reached its kill point: %v\n%s", err, b.Tail(40))
	}
	b.Close()
	bTicks := afterTakeover(t, b)
	if _, err := a2.Expect(ftFailedOver, 3*time.Minute); err != nil {
		t.Fatalf("a2 did not take over: %v\n%s", err, a2.Tail(40))
	}
	if len(aTicks) == 0 || len(bTicks) == 0 {
		t.Fatalf("a released %d lines, b %d", len(aTicks), len(bTicks))
	}
	a2Ticks := waitTicks(t, a2, bTicks[len(bTicks)-1].n+30)
	r1 := checkSeam(t, aTicks, bTicks)
	r2 := checkSeam(t, bTicks, a2Ticks)
	checkReplay(t, b, r1, 2)
	checkReplay(t, a2, r2, 3)
	checkGuestState(t, a2.Output(), b.Output())
	t.Logf("a released ticks 1..%d; b went on at %d (%d repeated) to %d; a2 went on at %d (%d repeated) to %d",
		aTicks[len(aTicks)-1].n, bTicks[0].n, max(r1, 0), bTicks[len(bTicks)-1].n, a2Ticks[0].n, max(r2, 0), a2Ticks[len(a2Ticks)-1].n)
}

// TestBochsFTGuest is the pair under VT-x: two doppel instances under
// Bochs, their e1000 NICs linked by bxhub, protect ftticks through the
// sync and checkpoints, and the secondary takes over when the primary's
// Bochs is killed right after an acknowledgement. Bochs carries about
// 1,000 frames a second, so the epochs are longer than under QEMU. Its
// e1000 has no link state to lose, so the secondary learns of the death
// from the heartbeat deadline alone (160 ms); the takeover's figures are
// logged.
func TestBochsFTGuest(t *testing.T) {
	base := bochsFTHub(t)
	boot := func(name string, i int, flags string) *Machine { return startBochsFTNode(t, base, name, i, flags) }
	p := boot("primary", 0, "doppel.ft.role=primary doppel.ft.kill=acked:20")
	s := boot("secondary", 1, "doppel.ft.role=secondary doppel.ft.peer=10.9.0.1")
	if _, err := p.Expect(ftProtected, 10*time.Minute); err != nil {
		t.Fatalf("primary never protected: %v\n%s\nsecondary:\n%s", err, p.Tail(40), s.Tail(20))
	}
	if _, err := p.Expect(ftKillLine, 10*time.Minute); err != nil {
		t.Fatalf("primary never reached its kill point: %v\n%s", err, p.Tail(40))
	}
	p.Close()
	prim := ticks(p.Output())
	fo, err := s.Expect(ftFailedOver, 5*time.Minute)
	if err != nil {
		t.Fatalf("no takeover: %v\n%s", err, s.Tail(40))
	}
	if len(prim) == 0 {
		t.Fatalf("the primary released no line\n%s", p.Tail(40))
	}
	for i := range prim {
		if prim[i].n != i+1 || prim[i].sum != tickSum(prim[i].n) {
			t.Fatalf("primary: line %d is tick %d sum %d", i+1, prim[i].n, prim[i].sum)
		}
	}
	sec := waitTicksFor(t, s, prim[len(prim)-1].n+10, 10*time.Minute)
	r := checkSeam(t, prim, sec)
	checkReplay(t, s, r, 2)
	checkGuestState(t, p.Output(), s.Output())
	if f := lastMatch(ftFigures, p.Output()); f != nil {
		t.Logf("primary: %s", f[0])
	}
	t.Logf("primary released ticks 1..%d; the secondary went on at %d (%d repeated) to %d",
		prim[len(prim)-1].n, sec[0].n, max(r, 0), sec[len(sec)-1].n)
	if tt := ftTakeoverTimes.FindString(s.Output()); tt != "" {
		t.Logf("figures: the guest ran on the secondary %s ms after the primary was last heard (%s)", fo[2], tt)
	}
}

// bochsFTHub starts a bxhub with two ports for a Bochs FT pair and
// returns its base UDP port.
func bochsFTHub(t *testing.T) int {
	t.Helper()
	if _, err := exec.LookPath("bxhub"); err != nil {
		t.Fatalf("bxhub (Debian bochs package) not installed: %v", err)
	}
	base, err := freeUDPBase(4)
	if err != nil {
		t.Fatal(err)
	}
	hub := exec.Command("bxhub", "-ports=2", fmt.Sprintf("-base=%d", base))
	dieWithTest(hub)
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Process.Kill(); hub.Wait() })
	return base
}

// startBochsFTNode boots one doppel of a Bochs FT pair (VT-x, the e1000 on
// port i of the hub at base) protecting ftticks with 100 ms epochs and a
// 160 ms heartbeat deadline (20 ms heartbeats, 8 missed). Each Bochs keeps
// its own clock, which counts instructions and skips ahead when its CPUs
// are idle; docs/design.md ("Bochs with a short heartbeat deadline") has
// the runs that found no false failover at this deadline.
func startBochsFTNode(t *testing.T, base int, name string, i int, flags string) *Machine {
	t.Helper()
	cmd := "doppel.reserve=96M doppel.guest=ftticks doppel.guest.mem=16M doppel.ft.epoch=100ms doppel.ft.hb=20ms doppel.ft.hbmiss=8 " +
		fmt.Sprintf("doppel.net.e1000-0=10.9.0.%d/24 ", i+1) + flags
	// Two CPUs: the busy guest's vCPU keeps one, the engine and the
	// network stack need the other.
	m, err := StartBochs(t.Name()+"-"+name, BochsConfig{Cmdline: cmd, CPUs: 2, MemMiB: 512,
		Modules: []Module{{Path: imagePath("ftticks.bin"), Name: "ftticks"}},
		Extra:   fmt.Sprintf("e1000: enabled=1, mac=52:54:00:0f:01:%02x, ethmod=socket, ethdev=%d\n", i+1, base+2*i)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// TestBochsFTGuestPause is a report (REPORT_TESTS, make ftguest-report):
// a Bochs pair (VT-x with PML) protects ftticks, which writes a few pages
// per epoch, for bochsPauseCheckpoints checkpoints and logs the pause
// figures. Issue 12's goal is a pause p99 within 1 ms with few dirty
// pages; TestBochsFTGuest fails over after 11-19 checkpoints, which makes
// its p99 the maximum.
func TestBochsFTGuestPause(t *testing.T) {
	const bochsPauseCheckpoints = 300
	base := bochsFTHub(t)
	p := startBochsFTNode(t, base, "primary", 0, "doppel.ft.role=primary")
	s := startBochsFTNode(t, base, "secondary", 1, "doppel.ft.role=secondary doppel.ft.peer=10.9.0.1")
	if _, err := p.Expect(ftProtected, 10*time.Minute); err != nil {
		t.Fatalf("primary never protected: %v\n%s\nsecondary:\n%s", err, p.Tail(40), s.Tail(20))
	}
	line, took := awaitCheckpoints(t, p, bochsPauseCheckpoints, 10*time.Minute)
	t.Logf("figures: Bochs pair, ftticks, 100 ms epochs, %v of host time: %s", took.Round(time.Second), line)
}

// ftCheckpointsLine is a whole line of a primary's checkpoint figures.
var ftCheckpointsLine = regexp.MustCompile(`ft: checkpoints: (\d+),[^\r\n]*\r?\n`)

// awaitCheckpoints waits until primary p reports at least n checkpoints,
// each figures line within wait of the one before, and returns that line
// and the host time it took.
func awaitCheckpoints(t *testing.T, p *Machine, n int, wait time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		sub, err := p.Expect(ftCheckpointsLine, wait)
		if err != nil {
			t.Fatalf("checkpoints stopped: %v\n%s", err, p.Tail(40))
		}
		if k, _ := strconv.Atoi(sub[1]); k >= n {
			return strings.TrimSpace(sub[0]), time.Since(start)
		}
	}
}

// TestQEMUSVMFTGuestPause is a report (REPORT_TESTS, make ftguest-report):
// the QEMU TCG pair (AMD-V) protects ftticks, which writes a few pages an
// epoch, for qemuPauseCheckpoints checkpoints and logs the pause figures,
// first as TestQEMUSVMFTGuest's pairs run (two CPUs a machine: four vCPU
// threads on the host's two cores), then with a one-CPU secondary, which
// runs no guest here (three threads). The pause is host time, so a vCPU
// thread that waits for a core is part of it; the two lines show how much.
func TestQEMUSVMFTGuestPause(t *testing.T) {
	const qemuPauseCheckpoints = 300
	for _, cpus := range []int{2, 1} {
		t.Run(fmt.Sprintf("secondary-%dcpu", cpus), func(t *testing.T) {
			p, s := ftGuestPairCPUs(t, "", "", cpus)
			if _, err := p.Expect(ftProtected, 5*time.Minute); err != nil {
				t.Fatalf("primary never protected: %v\n%s\nsecondary:\n%s", err, p.Tail(40), s.Tail(20))
			}
			line, took := awaitCheckpoints(t, p, qemuPauseCheckpoints, 5*time.Minute)
			t.Logf("figures: QEMU pair, secondary with %d CPUs, ftticks, %v of host time: %s", cpus, took.Round(time.Second), line)
		})
	}
}

// TestQEMUSVMFTGuestAuto boots two identical machines with
// doppel.ft.role=auto: the lower address becomes the primary
// (ftmirror/doc.go, "Roles at boot"), the other its secondary, which
// takes the guest over when the primary dies.
func TestQEMUSVMFTGuestAuto(t *testing.T) {
	h := newHub(t)
	flags := func(peer int) string {
		return fmt.Sprintf("doppel.ft.role=auto doppel.ft.peer=10.9.0.%d doppel.ft.kill=acked:40", peer)
	}
	a := startFTNode(t, "a", h, 0, flags(2))
	b := startFTNode(t, "b", h, 1, flags(1))
	if err := a.ExpectString("auto: no primary at 10.9.0.2; 10.9.0.1 < 10.9.0.2: this node is the primary", 5*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, a.Tail(30))
	}
	if _, err := b.Expect(regexp.MustCompile(`auto: (no primary at 10.9.0.1 yet; 10.9.0.2 > 10.9.0.1|10.9.0.1 serves as primary): this node is the secondary`), 5*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, b.Tail(30))
	}
	// The shell's protect command shows what /status shows.
	if _, err := a.Expect(ftProtected, 5*time.Minute); err != nil {
		t.Fatalf("never protected: %v\n%s\nb:\n%s", err, a.Tail(40), b.Tail(20))
	}
	if err := a.Type("protect\r"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"role": "primary"`, `"protection": "protected (secondary acknowledged epoch`} {
		if err := a.ExpectString(want, time.Minute); err != nil {
			t.Fatalf("protect: %v\n%s", err, a.Tail(30))
		}
	}
	if _, err := a.Expect(ftKillLine, 5*time.Minute); err != nil {
		t.Fatalf("the primary never reached its kill point: %v\n%s\nb:\n%s", err, a.Tail(40), b.Tail(20))
	}
	a.Close()
	prim := ticks(a.Output())
	if _, err := b.Expect(ftFailedOver, 3*time.Minute); err != nil {
		t.Fatalf("b did not take over: %v\n%s", err, b.Tail(40))
	}
	if len(prim) == 0 {
		t.Fatalf("the primary released no line\n%s", a.Tail(40))
	}
	sec := waitTicks(t, b, prim[len(prim)-1].n+20)
	r := checkSeam(t, prim, sec)
	t.Logf("auto: 10.9.0.1 primary released ticks 1..%d; 10.9.0.2 went on at %d (%d repeated) to %d",
		prim[len(prim)-1].n, sec[0].n, max(r, 0), sec[len(sec)-1].n)
}
