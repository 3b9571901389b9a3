package qemutest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkBochsGuestBoot boots the Linux guest (kernel and initramfs
// straight from GRUB, no doppel) on bare Bochs with one CPU, types at its
// shell like TestQEMUGuestImage and powers it off: the bare side of the
// doppel/bare ratio. It reports the wall time from Bochs's start to the
// kernel's "reboot: Power down", the guest's own clock then (printk time:
// TSC-based), and the Bochs tick count of the last Bochs log line before
// the exit (not the end of the run: Bochs logs rarely, and the guest
// idles through wall-time typing in skipped-ahead ticks). Input is typed
// in wall time, so only the part up to the banner is comparable. Run it
// alone:
//
//	go test -run '^$' -bench BochsGuestBoot -benchtime 1x ./qemu-test/
//
// The ratio the issue asks for, instructions to the guest's shell under
// doppel against bare, is shell-s over the two runs: the guest's own
// clock at its shell banner minus where its TSC clock started (the
// firmware and GRUB before the kernel on bare Bochs; nearly nothing under
// doppel, whose guest TSC starts at 0 when the VM is built). One CPU,
// ips=100M, TSC at 100 MHz (Bochs's clock is sync=none: emulated time,
// not wall time, so host load does not change it): 1 s is 100M Bochs
// ticks, one per instruction and one per byte or element of a REP
// string instruction; a halted CPU's idle ticks are skipped ahead, on
// both sides, and counted as time (busy-s leaves out the guest's idle
// time). The bare kernel is told the TSC rate with tsc_early_khz, as
// doppel's CPUID 0x15 tells its guest: Bochs's CPUID claims 3.5 GHz, and
// a kernel that believes it runs its clock 35 times slow.
func BenchmarkBochsGuestBoot(b *testing.B) {
	needGuest(b)
	for range b.N {
		guestSec, shell, wall, err := bochsGuestBoot(b.Name())
		if err != nil {
			b.Fatal(err)
		}
		shell.report(b)
		b.ReportMetric(guestSec, "guest-s")
		b.ReportMetric(wall.Seconds(), "wall-s")
		if ticks, err := lastBochsTick(filepath.Join(repoRoot(), "build", "qemu-test", b.Name(), "bochs.out")); err == nil {
			b.ReportMetric(float64(ticks), "bochs-ticks")
		} else {
			b.Logf("bochs ticks: %v", err)
		}
	}
}

// bochsTick is the tick stamp that starts a Bochs log line.
var bochsTick = regexp.MustCompile(`(?m)^(\d{11,})[a-z]\[`)

// lastBochsTick returns the tick stamp of the last log line in a Bochs
// output file.
func lastBochsTick(path string) (uint64, error) {
	out, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	all := bochsTick.FindAllSubmatch(out, -1)
	if len(all) == 0 {
		return 0, fmt.Errorf("no tick-stamped line in %s", path)
	}
	return strconv.ParseUint(string(all[len(all)-1][1]), 10, 64)
}

// benchGuestArgs are extra kernel arguments for both Bochs guest
// benchmarks from DOPPEL_BENCH_ARGS (e.g. initcall_debug), with a
// leading space.
func benchGuestArgs() string {
	if a := strings.TrimSpace(os.Getenv("DOPPEL_BENCH_ARGS")); a != "" {
		return " " + a
	}
	return ""
}

// bochsIPSLine is the emulated instructions per second of a Bochs
// configuration's cpu line.
var bochsIPSLine = regexp.MustCompile(`(?m)^cpu:.*\bips=(\d+)`)

// bochsIPS returns the ips of a Bochs configuration: its TSC rate.
func bochsIPS(rc []byte) (uint64, error) {
	m := bochsIPSLine.FindSubmatch(rc)
	if m == nil {
		return 0, fmt.Errorf("bochsrc: no ips= on the cpu line")
	}
	return strconv.ParseUint(string(m[1]), 10, 64)
}

// powerDown is the kernel's last line, with its timestamp.
var powerDown = regexp.MustCompile(`\[ *(\d+\.\d+)\] reboot: Power down`)

func bochsGuestBoot(name string) (guestSec float64, shell bootClock, wall time.Duration, err error) {
	work := filepath.Join(repoRoot(), "build", "qemu-test", name)
	root := filepath.Join(work, "iso")
	if err := os.MkdirAll(filepath.Join(root, "boot", "grub"), 0o755); err != nil {
		return 0, shell, 0, err
	}
	for src, dst := range map[string]string{guestKernel(): "vmlinuz", guestInitrd(): "initramfs"} {
		if out, err := exec.Command("cp", src, filepath.Join(root, "boot", dst)).CombinedOutput(); err != nil {
			return 0, shell, 0, fmt.Errorf("cp: %v: %s", err, out)
		}
	}
	// Bochs's TSC counts one tick per emulated instruction slot, ips
	// per emulated second, but its CPU models report their real CPU's
	// rate in CPUID 0x15/0x16 (3.5 GHz for corei7_skylake_x), which
	// Linux trusts: its clock would run 35 times slow and its delay
	// loops spin 35 times too long. Tell the kernel the true rate, as
	// doppel's CPUID does for its guest, so that the two guests' clocks
	// measure the same thing.
	iso := filepath.Join(work, "linux.iso")
	port, err := freePort()
	if err != nil {
		return 0, shell, 0, err
	}
	rc, err := exec.Command("bash", filepath.Join(repoRoot(), "scripts", "bochsrc.sh"), iso, strconv.Itoa(port), "1", "512").Output()
	if err != nil {
		return 0, shell, 0, fmt.Errorf("bochsrc: %w", err)
	}
	ips, err := bochsIPS(rc)
	if err != nil {
		return 0, shell, 0, err
	}
	cfg := `serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry "linux" {
  linux /boot/vmlinuz console=ttyS0 quiet tsc_early_khz=` + strconv.FormatUint(ips/1000, 10) + benchGuestArgs() + `
  initrd /boot/initramfs
}
`
	if err := os.WriteFile(filepath.Join(root, "boot", "grub", "grub.cfg"), []byte(cfg), 0o644); err != nil {
		return 0, shell, 0, err
	}
	if out, err := exec.Command("grub-mkrescue", "-o", iso, root).CombinedOutput(); err != nil {
		return 0, shell, 0, fmt.Errorf("grub-mkrescue: %v: %s", err, out)
	}
	rcPath, contPath := filepath.Join(work, "bochsrc"), filepath.Join(work, "continue")
	if err := os.WriteFile(rcPath, rc, 0o644); err != nil {
		return 0, shell, 0, err
	}
	if err := os.WriteFile(contPath, []byte("c\n"), 0o644); err != nil {
		return 0, shell, 0, err
	}
	m, err := newMachine(name)
	if err != nil {
		return 0, shell, 0, err
	}
	bochsOut, err := os.Create(filepath.Join(work, "bochs.out"))
	if err != nil {
		return 0, shell, 0, err
	}
	defer bochsOut.Close()
	m.cmd = exec.Command("bochs", "-q", "-f", rcPath, "-rc", contPath)
	m.cmd.Stdout, m.cmd.Stderr = bochsOut, bochsOut
	start := time.Now()
	if err := m.start(); err != nil {
		return 0, shell, 0, err
	}
	defer m.Close()
	conn, err := dialRetry(port, 30*time.Second, m.exited)
	if err != nil {
		return 0, shell, 0, fmt.Errorf("bochs COM1: %w", err)
	}
	m.in = conn
	go m.pump(conn)
	guestSec, shell, err = guestSession(m, nil)
	if err != nil {
		return 0, shell, 0, err
	}
	return guestSec, shell, time.Since(start), nil
}

// bootClock is the guest's clock at its shell banner (guestinit's
// "doppel-guest: boot:" line): uptime, the part of it the CPU spent
// idle, and where the kernel's TSC clock started (the time before the
// kernel ran).
type bootClock struct{ uptime, idle, kernelFrom float64 }

var bootLine = regexp.MustCompile(`doppel-guest: boot: uptime (\d+\.\d+) s, idle (\d+\.\d+) s, kernel clock from (\d+\.\d+) s`)

// shell is the kernel's own boot to the shell, in guest seconds.
func (c bootClock) shell() float64 { return c.uptime - c.kernelFrom }

func (c bootClock) report(b *testing.B) {
	b.ReportMetric(c.shell(), "shell-s")
	b.ReportMetric(c.uptime, "uptime-s")
	b.ReportMetric(c.shell()-c.idle, "busy-s")
	b.Logf("guest clock at the shell banner: uptime %.3f s, kernel clock from %.3f s: %.3f s (%.0fM Bochs ticks at 100 MHz) from the kernel to its shell, %.3f s of it idle",
		c.uptime, c.kernelFrom, c.shell(), c.shell()*100, c.idle)
}

// guestSession waits for the one-CPU guest's banner, runs atShell (if
// set) there, types at its shell and powers it off; it returns the
// guest's clock at power-off and at the banner.
func guestSession(m *Machine, atShell func() error) (float64, bootClock, error) {
	var clock bootClock
	subs, err := m.Expect(bootLine, 15*time.Minute)
	if err != nil {
		return 0, clock, err
	}
	clock.uptime, _ = strconv.ParseFloat(subs[1], 64)
	clock.idle, _ = strconv.ParseFloat(subs[2], 64)
	clock.kernelFrom, _ = strconv.ParseFloat(subs[3], 64)
	if _, err := m.Expect(regexp.MustCompile(`doppel-guest: up: linux \S+, 1 cpus`), 15*time.Minute); err != nil {
		return 0, clock, err
	}
	if atShell != nil {
		if err := atShell(); err != nil {
			return 0, clock, err
		}
	}
	type command struct {
		cmd, want string
		timeout   time.Duration
	}
	cmds := []command{
		{"uname -r", `(?m)^6\.\S+-cloud-amd64\r*$`, 2 * time.Minute},
		{"grep -c processor /proc/cpuinfo", `(?m)^1\r*$`, 2 * time.Minute},
		{"echo bochs-4711 > /tmp/f && cat /tmp/f", `(?m)^bochs-4711\r*$`, 2 * time.Minute},
	}
	// The guest's view for side-by-side comparison (bare against
	// doppel), in the run's log: DOPPEL_BENCH_DIAG=cpu its CPU, =dmesg
	// its whole kernel log too (under doppel the console runs at some
	// kB/s of wall time).
	switch os.Getenv("DOPPEL_BENCH_DIAG") {
	case "dmesg":
		cmds = append(cmds, command{"dmesg", `Run /init as init process`, 30 * time.Minute})
		fallthrough
	case "cpu":
		cmds = append(cmds, command{"cat /proc/cpuinfo", `(?m)^flags\s*:`, 2 * time.Minute})
	}
	for _, c := range cmds {
		if _, err := m.Expect(gosh, c.timeout); err != nil {
			return 0, clock, err
		}
		if err := m.Type(c.cmd + "\n"); err != nil {
			return 0, clock, err
		}
		if _, err := m.Expect(regexp.MustCompile(c.want), c.timeout); err != nil {
			return 0, clock, fmt.Errorf("%s: %w", c.cmd, err)
		}
	}
	if _, err := m.Expect(gosh, cmds[len(cmds)-1].timeout); err != nil {
		return 0, clock, err
	}
	if err := m.Type("poweroff\n"); err != nil {
		return 0, clock, err
	}
	subs, err = m.Expect(powerDown, 5*time.Minute)
	if err != nil {
		return 0, clock, err
	}
	guestSec, _ := strconv.ParseFloat(subs[1], 64)
	return guestSec, clock, nil
}

// BenchmarkBochsDoppelGuestBoot is BenchmarkBochsGuestBoot with doppel
// in between: the same kernel and initramfs as multiboot modules of
// doppel's ISO, run as doppel's guest with one vCPU on a one-CPU Bochs
// (VT-x and EPT emulated), the same shell session. Its wall-s over the
// bare run's is the doppel/bare ratio the issue asks for.
func BenchmarkBochsDoppelGuestBoot(b *testing.B) {
	needGuest(b)
	for range b.N {
		start := time.Now()
		m, err := StartBochs(b.Name(), BochsConfig{
			Cmdline: "doppel.guest=vmlinuz doppel.guest.initrd=initramfs doppel.reserve=768M doppel.guest.mem=512M doppel.guest.cpus=1",
			CPUs:    1, MemMiB: 1536,
			Modules: []Module{{Path: guestKernel(), Name: "vmlinuz console=ttyS0 quiet" + benchGuestArgs()}, {Path: guestInitrd(), Name: "initramfs"}},
		})
		if err != nil {
			b.Fatal(err)
		}
		// At the shell banner: doppel's exit counts so far, from its own
		// shell (Ctrl-A c there and back).
		var exits []string
		atShell := func() error {
			if err := m.Type("\x01c"); err != nil {
				return err
			}
			if err := m.ExpectString("console to doppel's shell", time.Minute); err != nil {
				return err
			}
			if err := m.Type("guest\r"); err != nil {
				return err
			}
			subs, err := m.Expect(regexp.MustCompile(`guest: \d+ exits:[^\r\n]*\r?\n`), time.Minute)
			if err != nil {
				return err
			}
			exits = append(exits, strings.TrimSpace(subs[0]))
			for _, re := range []string{`guest: vcpu 0: [^\r\n]*\r?\n`, `guest: vcpu 0 time: [^\r\n]*\r?\n`} {
				if subs, err = m.Expect(regexp.MustCompile(re), time.Minute); err != nil {
					return err
				}
				exits = append(exits, strings.TrimSpace(subs[0]))
			}
			if err := m.Type("\x01c"); err != nil {
				return err
			}
			if err := m.ExpectString("console to the guest", time.Minute); err != nil {
				return err
			}
			return m.Type("\n")
		}
		guestSec, shell, err := guestSession(m, atShell)
		wall := time.Since(start)
		m.Close()
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range exits {
			b.Logf("at the shell banner: %s", l)
		}
		shell.report(b)
		b.ReportMetric(guestSec, "guest-s")
		b.ReportMetric(wall.Seconds(), "wall-s")
	}
}
