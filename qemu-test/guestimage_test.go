package qemutest

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/vmm/loader"
)

// The Linux guest (scripts/guest-image.sh: Debian's cloud kernel and a
// u-root initramfs) as image.sh copies it next to the tested image.
var (
	guestKernel = func() string { return imagePath("vmlinuz") }
	guestInitrd = func() string { return imagePath("initramfs.cpio") }
)

// guestRelease is the kernel release of the pinned package in
// scripts/guest.env (linux-image-<release>).
func guestRelease(t *testing.T) string {
	t.Helper()
	f, err := os.Open(repoRoot() + "/scripts/guest.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "GUEST_KERNEL_PKG=linux-image-"); ok {
			return v
		}
	}
	t.Fatal("no GUEST_KERNEL_PKG in scripts/guest.env")
	return ""
}

func needGuest(t testing.TB) {
	t.Helper()
	for _, p := range []string{guestKernel(), guestInitrd()} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("guest image missing (%v): image.sh could not build it, see scripts/guest-image.sh's message above", err)
		}
	}
}

// TestGuestImageLoads loads the real Debian kernel and initramfs with
// vmm/loader into host memory: the bzImage's header must pass and the
// kernel land where its header says, with the initrd high in RAM.
func TestGuestImageLoads(t *testing.T) {
	needGuest(t)
	kernel, err := os.ReadFile(guestKernel())
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := os.ReadFile(guestInitrd())
	if err != nil {
		t.Fatal(err)
	}
	const ram = 256 << 20
	mem := make(loader.Flat, ram)
	s, kind, err := loader.Load(mem, loader.Config{Layout: loader.NewPCLayout(ram), Kernel: kernel, Cmdline: "console=ttyS0", Initrd: initrd})
	if err != nil {
		t.Fatal(err)
	}
	if kind != loader.KindBzImage || s.Mode != loader.Long64 || s.RIP%0x200000 != 0x200 {
		t.Errorf("kind %v mode %v entry %#x: want a bzImage entered in 64-bit mode at an aligned load address + 0x200", kind, s.Mode, s.RIP)
	}
	// Too little RAM for the kernel's init_size: a clear error.
	if _, _, err := loader.Load(make(loader.Flat, 24<<20), loader.Config{Layout: loader.NewPCLayout(24 << 20), Kernel: kernel, Initrd: initrd}); err == nil {
		t.Error("the guest loaded into 24 MiB of RAM")
	} else {
		t.Logf("24 MiB: %v", err)
	}
}

// TestQEMUGuestImage boots the guest kernel and initramfs under bare QEMU
// TCG (no doppel) and uses its shell the way the doppel Linux test will:
// the baseline that proves the image.
func TestQEMUGuestImage(t *testing.T) {
	needGuest(t)
	release := guestRelease(t)
	const cpus = 2
	m, err := runQEMU(t.Name(), []string{
		// no_timer_check: on a loaded host TCG's timer can miss Linux's
		// IO-APIC timer check, which then panics ("IO-APIC + timer
		// doesn't work"); seen here under load.
		"-kernel", guestKernel(), "-initrd", guestInitrd(), "-append", "console=ttyS0 quiet no_timer_check",
		"-smp", strconv.Itoa(cpus), "-m", "512",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	// Up to the line's end: a trailing \S+ alone matches a line still
	// arriving (seen: the module list cut at "virtio_pci_lega").
	subs, err := m.Expect(regexp.MustCompile(`doppel-guest: up: linux (\S+), (\d+) cpus, modules (\S+)\r?\n`), 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("banner after %v: %s", time.Since(start).Round(time.Millisecond), subs[0])
	if subs[1] != release || subs[2] != strconv.Itoa(cpus) || !strings.Contains(subs[3], "virtio_net") {
		t.Errorf("banner %q: want linux %s, %d cpus, virtio_net loaded", subs[0], release, cpus)
	}
	sh := &guestShell{t: t, m: m}
	sh.run("uname -r", `(?m)^`+regexp.QuoteMeta(release)+`\r?$`)
	sh.run("grep -c processor /proc/cpuinfo", fmt.Sprintf(`(?m)^%d\r?$`, cpus))
	date := sh.run("date -u", `(?m)^(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d UTC \d{4})\r?$`)
	if d, err := time.Parse(time.UnixDate, date[1]); err != nil {
		t.Errorf("date %q: %v", date[1], err)
	} else if off := time.Since(d); off > 10*time.Minute || off < -10*time.Minute {
		t.Errorf("guest date %v is %v off the host's", d, off)
	}
	sh.run("mkdir -p /tmp/t && echo written-in-the-guest-4711 > /tmp/t/f && cat /tmp/t/f", `(?m)^written-in-the-guest-4711\r?$`)
	const mib, lines = 4, 5
	sh.run(fmt.Sprintf("workload -mib %d -lines %d -interval 20ms", mib, lines), `workload: done n=\d+`)
	checkWorkload(t, m.Output(), mib, lines)
	if err := m.Type("poweroff\n"); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if st := exitStatus(m.err); st != 0 {
		t.Errorf("QEMU exit status %d after poweroff, want 0", st)
	}
	t.Logf("boot to poweroff: %v", time.Since(start).Round(time.Millisecond))
}

// guestShell types commands at gosh's "$ " prompt.
type guestShell struct {
	t *testing.T
	m *Machine
}

var gosh = regexp.MustCompile(`\$ $`)

// run waits for the prompt, types cmd and waits for want in its output.
func (s *guestShell) run(cmd, want string) []string {
	s.t.Helper()
	if _, err := s.m.Expect(gosh, time.Minute); err != nil {
		s.t.Fatal(err)
	}
	if err := s.m.Type(cmd + "\n"); err != nil {
		s.t.Fatal(err)
	}
	subs, err := s.m.Expect(regexp.MustCompile(want), time.Minute)
	if err != nil {
		s.t.Fatalf("%s: %v", cmd, err)
	}
	return subs
}

// checkWorkload checks the workload's lines in out: the fill checksum,
// then counters 1..lines without gaps, each checksum recomputed here by
// the same algorithm (guest/cmds/workload).
func checkWorkload(t *testing.T, out string, mib, lines int) {
	t.Helper()
	mem := make([]byte, mib<<20)
	workloadFill(mem, 1)
	want := []string{fmt.Sprintf("workload: filled %d MiB sum=%08x", mib, crc32.ChecksumIEEE(mem))}
	for n := 1; n <= lines; n++ {
		workloadStep(mem, n)
		want = append(want, fmt.Sprintf("workload: n=%d sum=%08x", n, crc32.ChecksumIEEE(mem)))
	}
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimRight(l, "\r"); strings.HasPrefix(l, "workload: ") && !strings.HasPrefix(l, "workload: done") &&
			!strings.HasPrefix(l, "workload: ymm") {
			got = append(got, l)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("workload output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// workloadFill and workloadStep mirror guest/cmds/workload.
func workloadFill(mem []byte, seed uint64) {
	x := seed | 1
	for i := 0; i+8 <= len(mem); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for b := 0; b < 8; b++ {
			mem[i+b] = byte(x >> (8 * b))
		}
	}
}

func workloadStep(mem []byte, n int) {
	for p := 0; p+8 <= len(mem); p += 4096 {
		off := p + (n*8)%4096
		mem[off] ^= byte(n)
		mem[off+1] ^= byte(n >> 8)
	}
}
