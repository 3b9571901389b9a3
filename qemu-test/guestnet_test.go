package qemutest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/net/netstack"
	"github.com/doppel-ft/doppel/nic/nictest"
)

// The guest's network (issue 12): the Linux guest's virtio-net NIC,
// bridged by doppel to its own virtio-net NIC (doppel.guest.net), on an
// outside network that this test joins with a TCP/IP stack of its own
// (doppel's net/netstack, gVisor's tcpip) to read the guest's numbered
// TCP stream (guest/cmds/workload -serve, started by guestinit from
// doppel.serve=).

const (
	guestIP       = "10.0.2.15"
	guestMACFlag  = "02:d0:99:e1:00:01" // kernel.DefaultGuestMAC
	outsideHostIP = "10.0.2.2"
	streamPort    = 7000 // paced; streamPort+1 unpaced
)

// lan is the outside network: a hub joining QEMU `-netdev socket,connect=`
// back ends (each frame a 4-byte big-endian length and the frame; a port
// may reconnect, a restarted machine) and the host's own port, a
// nictest.Fake whose peer the test's stack uses. Every frame goes to every
// other port, as on a hub.
type lan struct {
	ln     []net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	host   *nictest.Fake // the hub's end of the host's cable
	frames atomic.Uint64
	trace  lanTrace // the numbered stream's segments
}

// newLAN listens for n QEMU ports and returns the hub and the NIC the
// host's stack uses.
func newLAN(t *testing.T, n int) (*lan, *nictest.Fake) {
	stackEnd, hubEnd := nictest.Pair(nictest.Config{RxQueue: 1024})
	l := &lan{conns: make([]net.Conn, n), host: hubEnd, trace: lanTrace{port: streamPort}}
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l.ln = append(l.ln, ln)
		t.Cleanup(func() { ln.Close() })
		go l.accept(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			f, err := hubEnd.Receive(ctx)
			if err != nil {
				return
			}
			l.send(-1, binary.BigEndian.AppendUint32(nil, uint32(len(f))), f)
		}
	}()
	return l, stackEnd
}

func (l *lan) Port(i int) int { return l.ln[i].Addr().(*net.TCPAddr).Port }

func (l *lan) accept(i int) {
	for {
		c, err := l.ln[i].Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if old := l.conns[i]; old != nil {
			old.Close()
		}
		l.conns[i] = c
		l.mu.Unlock()
		go l.forward(i, c)
	}
}

// forward reads port i's frames and sends them to every other port.
func (l *lan) forward(i int, c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(r, f); err != nil {
			return
		}
		l.send(i, hdr[:], f)
	}
}

// send delivers a frame from port from (-1: the host) to the others.
func (l *lan) send(from int, hdr, f []byte) {
	l.frames.Add(1)
	l.trace.observe(from < 0, f)
	if from >= 0 {
		for l.host.Transmit(f) != nil { // the host's ring is full: wait
			select {
			case <-l.host.TxReady():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, c := range l.conns {
		if i != from && c != nil {
			c.Write(append(append([]byte(nil), hdr...), f...)) // a dead machine's port drops it
		}
	}
}

// outsideHost is the test's own machine on the LAN.
func outsideHost(t *testing.T, port *nictest.Fake) *netstack.Stack {
	t.Helper()
	st, err := netstack.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cfg, err := netstack.ParseConfig(outsideHostIP + "/24")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Add(port, cfg); err != nil {
		t.Fatal(err)
	}
	return st
}

// dialGuest connects to the guest's port, retrying while the guest is
// not answering yet.
func dialGuest(t *testing.T, st *netstack.Stack, port int, within time.Duration) net.Conn {
	t.Helper()
	return dialGuestOn(t, nil, st, port, within)
}

// dialGuestOn is dialGuest for the guest in m: a machine that died fails
// the test at once, and the connection closes when it dies.
func dialGuestOn(t *testing.T, m *Machine, st *netstack.Stack, port int, within time.Duration) net.Conn {
	t.Helper()
	ap := netip.AddrPortFrom(netip.MustParseAddr(guestIP), uint16(port))
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if m != nil {
			go func() {
				select {
				case <-m.exited:
				case <-ctx.Done():
				}
				cancel()
			}()
		}
		c, err := st.Dial(ctx, ap)
		cancel()
		if err == nil {
			if m != nil {
				m.CloseOnExit(c)
			}
			return c
		}
		if m != nil {
			if died := m.Died(); died != "" {
				t.Fatalf("dial %v: %s", ap, died)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %v: %v", ap, err)
		}
		time.Sleep(time.Second)
	}
}

// streamReader checks a numbered stream line by line.
type streamReader struct {
	r    *bufio.Reader
	next uint64 // the number expected next
	// last is when the latest line was read; maxGap the longest wait
	// between two lines, before number gapAt.
	last   time.Time
	maxGap time.Duration
	gapAt  uint64
}

func newStreamReader(c net.Conn) *streamReader { return &streamReader{r: bufio.NewReader(c), next: 1} }

// read takes lines until n numbers have been read or d has passed, and
// returns how many bytes it read; a number out of order is an error.
func (s *streamReader) read(c net.Conn, n uint64, d time.Duration) (int, error) {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	bytes := 0
	for stop := s.next + n; s.next < stop; s.next++ {
		line, err := s.r.ReadString('\n')
		bytes += len(line)
		if err != nil {
			return bytes, fmt.Errorf("after number %d: %w", s.next-1, err)
		}
		got, err := strconv.ParseUint(line[:len(line)-1], 10, 64)
		if err != nil || got != s.next {
			return bytes, fmt.Errorf("line %q where %d was due", line, s.next)
		}
		now := time.Now()
		if !s.last.IsZero() && now.Sub(s.last) > s.maxGap {
			s.maxGap, s.gapAt = now.Sub(s.last), got
		}
		s.last = now
	}
	return bytes, nil
}

// guestNetModules are the Linux guest with its network configured and
// the numbered stream served.
func guestNetModules(t *testing.T) []Module {
	kernel, initrd := linuxGuestFile(t, "vmlinuz"), linuxGuestFile(t, "initramfs.cpio")
	return []Module{
		{Path: kernel, Name: fmt.Sprintf("vmlinuz %s doppel.ip=%s/24 doppel.serve=%d", linuxCmdline, guestIP, streamPort)},
		{Path: initrd, Name: "initramfs"},
	}
}

// TestQEMUSVMGuestNet boots the Linux guest under doppel under QEMU TCG
// with AMD-V, its NIC bridged to doppel's second NIC on the outside LAN,
// and reads its numbered TCP stream from the host's stack: paced, then
// unpaced for a rate, with every number in order. It then powers the
// guest off and checks doppel's bridge counters.
func TestQEMUSVMGuestNet(t *testing.T) {
	l, port := newLAN(t, 1)
	host := outsideHost(t, port)
	cmdline := "doppel.guest=vmlinuz doppel.guest.initrd=initramfs doppel.guest.mem=256M doppel.reserve=320M doppel.guest.cpus=1 doppel.guest.net=virtio-net-0"
	_, iso, err := buildISO(t.Name(), cmdline, guestNetModules(t))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := runGuestNetQEMU(t.Name(), iso, 768, l.Port(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.FailOn(guestEnded)
	if err := m.ExpectString("guest NIC "+guestMACFlag+" bridged to virtio-net-0", 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Expect(regexp.MustCompile(`doppel-guest: net: eth0 `+regexp.QuoteMeta(guestIP)+`/24 mac `+guestMACFlag), 40*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.ExpectString("workload: serving the numbered stream", 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest network up %v after QEMU start", time.Since(start).Round(time.Second))
	c := dialGuestOn(t, m, host, streamPort, 5*time.Minute)
	defer c.Close()
	s := newStreamReader(c)
	t0 := time.Now()
	if _, err := s.read(c, 200, 5*time.Minute); err != nil {
		t.Fatalf("paced stream: %v%s", err, m.Died())
	}
	t.Logf("paced stream: 200 numbers in order in %v (10 ms apart in the guest)", time.Since(t0).Round(time.Millisecond))

	fast := dialGuestOn(t, m, host, streamPort+1, time.Minute)
	defer fast.Close()
	fs := newStreamReader(fast)
	t1 := time.Now()
	n, err := fs.read(fast, 1<<62, 10*time.Second)
	if err != nil && !isDeadline(err) {
		t.Fatalf("unpaced stream: %v%s", err, m.Died())
	}
	el := time.Since(t1)
	if fs.next < 1000 {
		t.Errorf("unpaced stream: only %d numbers in %v", fs.next-1, el)
	}
	t.Logf("unpaced stream: %d numbers in order, %d bytes in %v: %.0f KB/s", fs.next-1, n, el.Round(time.Millisecond), float64(n)/el.Seconds()/1000)
	// The paced stream kept going meanwhile.
	if _, err := s.read(c, 50, time.Minute); err != nil {
		t.Fatalf("paced stream after the unpaced one: %v%s", err, m.Died())
	}
	c.Close()
	fast.Close()

	// A fresh prompt: doppel's progress lines have come after the first.
	if err := m.Type("\r"); err != nil {
		t.Fatal(err)
	}
	sh := &linuxShell{t: t, m: m}
	sh.run("cat /sys/class/net/eth0/operstate", `(?m)^up\r*$`, 5*time.Minute)
	m.FailOn(nil) // the guest stops now
	if err := m.Type("poweroff\r"); err != nil {
		t.Fatal(err)
	}
	stats, err := m.Expect(regexp.MustCompile(`guest NIC: (\d+) frames out, (\d+) dropped \(queue full\), (\d+) refused by the NIC; (\d+) frames in, (\d+) not for the guest, (\d+) refused by the guest`), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s; the LAN carried %d frames", stats[0], l.frames.Load())
	out, _ := strconv.Atoi(stats[1])
	in, _ := strconv.Atoi(stats[4])
	// The paced stream alone is 250 segments; the unpaced one's fill
	// frames of up to 1514 bytes, and the host's ACKs come back.
	if out < 250 || in < 100 {
		t.Errorf("bridge counters %q: want the streams' frames", stats[0])
	}
	if stats[3] != "0" {
		t.Errorf("the NIC refused guest frames: %s", stats[0])
	}
}

// isDeadline: err is (or wraps) a timeout.
func isDeadline(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// runGuestNetQEMU boots iso under QEMU TCG with AMD-V (2 CPUs, memMiB),
// its virtio-net NIC on the outside LAN's port.
func runGuestNetQEMU(name, iso string, memMiB, port int) (*Machine, error) {
	return runQEMU(name, []string{"-cdrom", iso, "-boot", "d", "-smp", "2", "-m", strconv.Itoa(memMiB), "-cpu", "max",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-netdev", fmt.Sprintf("socket,id=out,connect=127.0.0.1:%d", port),
		"-device", "virtio-net-pci,disable-legacy=on,netdev=out,mac=52:54:00:0e:00:01"})
}
