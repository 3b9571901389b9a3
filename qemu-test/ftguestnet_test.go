package qemutest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The protected Linux guest (issue 12) under QEMU TCG with AMD-V: two
// doppel machines on the FT hub, each with a second NIC on the outside
// LAN where the test's own TCP/IP stack holds one TCP connection to the
// guest's numbered stream for the whole test. The guest also prints
// numbered lines with a checksum of 1 MiB it rewrites
// (guest/cmds/workload, doppel.lines=) on its serial console.

// workLine is a workload line on a node's console.
var workLine = regexp.MustCompile(`workload: n=(\d+) sum=([0-9a-f]{8})`)

// ftNetLines is the workload's line interval in the guest.
const ftNetLines = "250ms"

// startFTNetNode boots one doppel of an FT pair protecting the Linux
// guest: the FT link on its first virtio-net NIC (the hub, 10.9.0.side+1),
// the guest's NIC bridged to its second one on the outside LAN.
func startFTNetNode(t *testing.T, name string, h *hub, l *lan, side int, flags string) *Machine {
	t.Helper()
	name = t.Name() + "-" + name
	cmd := "doppel.reserve=320M doppel.guest=vmlinuz doppel.guest.initrd=initramfs doppel.guest.mem=192M " +
		"doppel.ft.hb=50ms doppel.ft.hbmiss=40 doppel.guest.net=virtio-net-1 doppel.guest.ip=" + guestIP + " " +
		fmt.Sprintf("doppel.net.virtio-net-0=10.9.0.%d/24 ", side+1) + flags
	mods := guestNetModules(t)
	mods[0].Name += " doppel.lines=" + ftNetLines
	_, iso, err := buildISO(name, cmd, mods)
	if err != nil {
		t.Fatal(err)
	}
	m, err := runQEMU(name, []string{"-cdrom", iso, "-boot", "d", "-smp", "2", "-m", "1024", "-cpu", "max",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-qmp", "unix:" + qmpPath(name) + ",server=on,wait=off",
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

func qmpPath(name string) string {
	return filepath.Join(repoRoot(), "build", "qemu-test", strings.ReplaceAll(name, "/", "_"), "qmp.sock")
}

// setLink sets the link of m's network back end id up or down through
// QEMU's QMP socket (set_link): the NIC on it reports the change to
// doppel as a PHY reports its cable's far end going away or coming back.
func setLink(m *Machine, id string, up bool) error {
	c, err := net.DialTimeout("unix", qmpPath(m.name), 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	for _, cmd := range []map[string]any{
		{"execute": "qmp_capabilities"},
		{"execute": "set_link", "arguments": map[string]any{"name": id, "up": up}},
	} {
		if err := json.NewEncoder(c).Encode(cmd); err != nil {
			return err
		}
		for { // events may come before the answer
			var ans map[string]any
			if err := dec.Decode(&ans); err != nil {
				return fmt.Errorf("qmp %v: %w", cmd["execute"], err)
			}
			if e, ok := ans["error"]; ok {
				return fmt.Errorf("qmp %v: %v", cmd["execute"], e)
			}
			if _, ok := ans["return"]; ok {
				break
			}
		}
	}
	return nil
}

// streamLog follows the guest's numbered stream in the background: the
// arrival time of every number, and the first error (a number out of
// order, the connection's end).
type streamLog struct {
	mu  sync.Mutex
	at  []time.Time // at[i]: when number i+1 arrived
	err error
}

func followStream(c net.Conn) *streamLog {
	s := &streamLog{}
	go func() {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			s.mu.Lock()
			if err == nil {
				n, perr := strconv.ParseUint(line[:len(line)-1], 10, 64)
				if want := uint64(len(s.at) + 1); perr != nil || n != want {
					err = fmt.Errorf("line %q where %d was due", line, want)
				}
			}
			if err != nil {
				s.err = fmt.Errorf("after number %d: %w", len(s.at), err)
				s.mu.Unlock()
				return
			}
			s.at = append(s.at, time.Now())
			s.mu.Unlock()
		}
	}()
	return s
}

// wait waits until number n has arrived.
func (s *streamLog) wait(n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		s.mu.Lock()
		got, err := len(s.at), s.err
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("number %d not there after %v (last %d)", n, d, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *streamLog) last() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

// gap is the longest wait between two numbers from the last one that
// arrived before t0 up to number upTo, and the number that ended it.
func (s *streamLog) gap(t0 time.Time, upTo int) (time.Duration, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i+1 < len(s.at) && s.at[i+1].Before(t0) {
		i++
	}
	var g time.Duration
	at := 0
	for ; i+1 < min(upTo, len(s.at)); i++ {
		if d := s.at[i+1].Sub(s.at[i]); d > g {
			g, at = d, i+2
		}
	}
	return g, at
}

// workSums gives the checksum the workload prints with line n
// (guest/cmds/workload with -mib 1 -seed 1), computed as far as asked.
type workSums struct {
	mem  []byte
	sums []uint32 // sums[i]: line i+1
}

func (w *workSums) sum(n int) uint32 {
	if w.mem == nil {
		w.mem = make([]byte, 1<<20)
		workloadFill(w.mem, 1)
	}
	for len(w.sums) < n {
		workloadStep(w.mem, len(w.sums)+1)
		w.sums = append(w.sums, crc32.ChecksumIEEE(w.mem))
	}
	return w.sums[n-1]
}

// workLines returns the numbers of the workload lines in out, failing on
// a wrong checksum (the guest's memory is not what it wrote).
func workLines(t *testing.T, w *workSums, name, out string) []int {
	t.Helper()
	var ns []int
	for _, m := range workLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		s, _ := strconv.ParseUint(m[2], 16, 32)
		if want := w.sum(n); n < 1 || uint32(s) != want {
			t.Fatalf("%s: workload line %d sum %08x, want %08x (guest memory is wrong)", name, n, s, want)
		}
		ns = append(ns, n)
	}
	return ns
}

// nodeLines are the workload lines a node released as primary: all of
// them, or those after its takeover line; a node must print none before
// it runs the guest.
func nodeLines(t *testing.T, w *workSums, m *Machine, promoted bool) []int {
	t.Helper()
	out := m.Output()
	if !promoted {
		return workLines(t, w, m.name, out)
	}
	i := ftTakeover.FindStringIndex(out)
	if i == nil {
		t.Fatalf("%s: no takeover line", m.name)
	}
	if before := workLines(t, w, m.name, out[:i[0]]); len(before) > 0 {
		t.Fatalf("%s printed guest lines before its takeover: %v", m.name, before)
	}
	return workLines(t, w, m.name, out[i[1]:])
}

// lineSeam checks that a node's lines after its takeover continue the
// old primary's with none missing and in order, and returns how many
// were repeated.
func lineSeam(t *testing.T, before, after []int) int {
	t.Helper()
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("workload lines: %d before the failover, %d after", len(before), len(after))
	}
	for _, ls := range [][]int{before, after} {
		for i := 1; i < len(ls); i++ {
			if ls[i] != ls[i-1]+1 {
				t.Fatalf("workload line %d after %d", ls[i], ls[i-1])
			}
		}
	}
	last := before[len(before)-1]
	if after[0] > last+1 {
		t.Fatalf("workload lines %d..%d missing: released up to %d, went on at %d", last+1, after[0]-1, last, after[0])
	}
	return max(last-after[0]+1, 0)
}

// ftGuestShell checks that the guest's shell answers on m's console: Ctrl-A
// c gives the console to the guest, a command's answer comes back (the
// echo of the typed line does not match it), Ctrl-A c gives the console
// back to doppel's shell.
func ftGuestShell(t *testing.T, m *Machine) {
	t.Helper()
	steps := []struct{ typed, want string }{
		{"\x01c", "console to the guest"},
		{"echo shell-$((6*7))-answers\r", "shell-42-answers"},
		{"\x01c", "console to doppel's shell"},
	}
	for _, s := range steps {
		if err := m.Type(s.typed); err != nil {
			t.Fatal(err)
		}
		if err := m.ExpectString(s.want, 3*time.Minute); err != nil {
			t.Fatalf("%s: guest shell: %q: %v\n%s", m.name, s.typed, err, m.Tail(30))
		}
	}
}

// TestQEMUSVMFTGuestNet is issue 12's end-to-end check with the Linux
// guest: two doppel under QEMU TCG with AMD-V protect it, the test holds
// one TCP connection to its numbered stream throughout, and the machine
// running the guest is killed at each named point in turn. After each
// kill the other takes over; the killed machine boots again as the new
// secondary, is resynced while the guest runs (F7), and takes the guest
// back at the next kill. Each failover must keep the TCP stream in order
// with no number missing or repeated on the same connection, continue
// the serial lines with none missing (repeats only from the last epochs,
// counted), with every checksum right, and leave the guest's shell
// answering. The last kill comes during a resync: the new secondary
// holds no complete copy and must not take over.
func TestQEMUSVMFTGuestNet(t *testing.T) {
	h := newHub(t)
	l, port := newLAN(t, 2)
	host := outsideHost(t, port)
	// Each node's own kill point (held until the test arms it with the
	// shell's ftkill); the sides alternate.
	kills := []string{"paused", "mid-epoch", "mid-group", "acked", "resync"}
	killFlags := func(i int) string {
		if i >= len(kills) {
			return ""
		}
		return "doppel.ft.kill=" + kills[i] + " doppel.ft.kill.hold"
	}
	p := startFTNetNode(t, "n0", h, l, 0, "doppel.ft.role=primary "+killFlags(0))
	s := startFTNetNode(t, "n1", h, l, 1, "doppel.ft.role=secondary doppel.ft.peer=10.9.0.1 "+killFlags(1))
	start := time.Now()
	if _, err := p.Expect(ftProtected, 20*time.Minute); err != nil {
		t.Fatalf("primary never protected: %v\n%s\nsecondary:\n%s", err, p.Tail(40), s.Tail(20))
	}
	t.Logf("protected %v after boot", time.Since(start).Round(time.Second))
	if err := p.ExpectString("workload: serving the numbered stream", 20*time.Minute); err != nil {
		t.Fatalf("%v\nsecondary:\n%s", err, s.Tail(20))
	}
	c := dialGuest(t, host, streamPort, 5*time.Minute)
	defer c.Close()
	stream := followStream(c)
	w := &workSums{}
	promoted := false // p runs the guest after a takeover
	for i, kill := range kills[:len(kills)-1] {
		ok := t.Run(kill, func(t *testing.T) {
			if i > 0 { // p was resynced: protected again
				t0 := time.Now()
				if _, err := p.Expect(ftProtected, 20*time.Minute); err != nil {
					t.Fatalf("%s never protected again: %v\n%s\n%s:\n%s", p.name, err, p.Tail(40), s.name, s.Tail(20))
				}
				t.Logf("%s resynced %s in %v", p.name, s.name, time.Since(t0).Round(time.Second))
			}
			if err := stream.wait(stream.last()+20, 5*time.Minute); err != nil {
				t.Fatalf("stream before the kill: %v", err)
			}
			if _, err := p.Expect(workLine, 5*time.Minute); err != nil {
				t.Fatalf("%s: no workload line: %v", p.name, err)
			}
			if err := p.Type("ftkill\r"); err != nil {
				t.Fatal(err)
			}
			kl, err := p.Expect(ftKillLine, 5*time.Minute)
			if err != nil {
				t.Fatalf("%s never reached %s: %v\n%s", p.name, kill, err, p.Tail(40))
			}
			tKill := time.Now()
			p.Close()
			// The cable from the dead machine: s's FT NIC loses its
			// carrier (kernel/ftguest_link.go).
			if err := setLink(s, "ft", false); err != nil {
				t.Fatalf("%s: link down: %v", s.name, err)
			}
			before := stream.last()
			fo, err := s.Expect(ftFailedOver, 3*time.Minute)
			if err != nil {
				t.Fatalf("%s did not take over: %v\n%s", s.name, err, s.Tail(40))
			}
			if !regexp.MustCompile(`takeover: gratuitous ARP: ` + regexp.QuoteMeta(guestIP)).MatchString(s.Output()) {
				t.Errorf("%s: no gratuitous ARP at the takeover", s.name)
			}
			// The outside: the same connection goes on in order.
			if err := stream.wait(before+50, 5*time.Minute); err != nil {
				t.Fatalf("stream after the kill: %v\n%s", err, s.Tail(40))
			}
			gap, gapAt := stream.gap(tKill, before+50)
			// The serial lines continue on s.
			pl := nodeLines(t, w, p, promoted)
			var sl []int
			deadline := time.Now().Add(5 * time.Minute)
			for {
				if sl = nodeLines(t, w, s, true); len(sl) > 0 && len(pl) > 0 && sl[len(sl)-1] >= pl[len(pl)-1]+5 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: the workload lines did not go on (old primary's last %v)\n%s", s.name, pl[len(pl)-1:], s.Tail(40))
				}
				time.Sleep(time.Second)
			}
			repeats := lineSeam(t, pl, sl)
			checkReplay(t, s, repeats, i+2)
			ftGuestShell(t, s)
			if f := lastMatch(ftFigures, p.Output()); f != nil {
				t.Logf("%s: %s", p.name, f[0])
			}
			t.Logf("kill %s (%s epoch %s): stream read to %d, went on in order on the same connection to %d, longest wait %v before number %d; %s ran the guest from epoch %s, %s ms after %s was last heard; workload lines to %d on %s, on from %d on %s (%d repeated)",
				kill, p.name, kl[2], before, stream.last(), gap.Round(time.Millisecond), gapAt, s.name, fo[1], fo[2], p.name,
				pl[len(pl)-1], p.name, sl[0], s.name, repeats)
		})
		if !ok {
			return
		}
		if i+2 == len(kills) {
			// The last: armed before its new secondary boots, s dies at
			// the first chunk of the resync, before that one holds a
			// complete copy.
			if err := s.Type("ftkill\r"); err != nil {
				t.Fatal(err)
			}
			if err := s.ExpectString("ftkill: armed at resync", time.Minute); err != nil {
				t.Fatalf("%v\n%s", err, s.Tail(20))
			}
		}
		// The killed machine comes back as the new secondary, and s's
		// cable with it.
		if err := setLink(s, "ft", true); err != nil {
			t.Fatalf("%s: link up: %v", s.name, err)
		}
		side := i % 2
		p, s = s, startFTNetNode(t, fmt.Sprintf("n%d", i+2), h, l, side,
			fmt.Sprintf("doppel.ft.role=secondary doppel.ft.peer=10.9.0.%d %s", 2-side, killFlags(i+2)))
		promoted = true
	}
	t.Run("resync", func(t *testing.T) {
		if _, err := p.Expect(ftKillLine, 10*time.Minute); err != nil {
			t.Fatalf("%s never reached the resync: %v\n%s\n%s:\n%s", p.name, err, p.Tail(40), s.name, s.Tail(20))
		}
		p.Close()
		if err := setLink(s, "ft", false); err != nil {
			t.Fatalf("%s: link down: %v", s.name, err)
		}
		before := stream.last()
		if _, err := s.Expect(regexp.MustCompile(`ft: protection: mirroring \(no complete copy; connecting to the primary again\)`), 3*time.Minute); err != nil {
			t.Fatalf("%v\n%s", err, s.Tail(40))
		}
		time.Sleep(10 * time.Second) // a takeover would come in this time
		out := s.Output()
		if ftTakeover.MatchString(out) || workLine.MatchString(out) {
			t.Fatalf("%s took over or ran the guest without a complete copy\n%s", s.name, s.Tail(40))
		}
		t.Logf("killed %s during the resync of %s: no takeover; the stream stopped at %d (read %d before the kill)", p.name, s.name, stream.last(), before)
	})
}
