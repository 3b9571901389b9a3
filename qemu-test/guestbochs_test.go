package qemutest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// BenchmarkBochsGuestBoot boots the Linux guest (kernel and initramfs
// straight from GRUB, no doppel) on bare Bochs with one CPU, types at its
// shell like TestQEMUGuestImage and powers it off: the bare side of the
// doppel/bare ratio. It reports the wall time from Bochs's start to the
// kernel's "reboot: Power down", the guest's own clock then (printk time:
// TSC-based, as the guest calibrated it), and the Bochs tick count of the
// last Bochs log line before the exit (one tick per instruction with one
// CPU; the Debian kernel's APERF/MPERF reads log every ~14M ticks, so this
// is the end of the run to within about 1%). Input is typed in wall time,
// so only the part up to the banner is deterministic. Run it alone:
//
//	go test -run '^$' -bench BochsGuestBoot -benchtime 1x ./qemu-test/
func BenchmarkBochsGuestBoot(b *testing.B) {
	for range b.N {
		guestSec, wall, err := bochsGuestBoot(b.Name())
		if err != nil {
			b.Fatal(err)
		}
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

// powerDown is the kernel's last line, with its timestamp.
var powerDown = regexp.MustCompile(`\[ *(\d+\.\d+)\] reboot: Power down`)

func bochsGuestBoot(name string) (guestSec float64, wall time.Duration, err error) {
	for _, p := range []string{guestKernel(), guestInitrd()} {
		if _, err := os.Stat(p); err != nil {
			return 0, 0, fmt.Errorf("guest image missing: %w", err)
		}
	}
	work := filepath.Join(repoRoot(), "build", "qemu-test", name)
	root := filepath.Join(work, "iso")
	if err := os.MkdirAll(filepath.Join(root, "boot", "grub"), 0o755); err != nil {
		return 0, 0, err
	}
	for src, dst := range map[string]string{guestKernel(): "vmlinuz", guestInitrd(): "initramfs"} {
		if out, err := exec.Command("cp", src, filepath.Join(root, "boot", dst)).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("cp: %v: %s", err, out)
		}
	}
	cfg := `serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry "linux" {
  linux /boot/vmlinuz console=ttyS0 quiet
  initrd /boot/initramfs
}
`
	if err := os.WriteFile(filepath.Join(root, "boot", "grub", "grub.cfg"), []byte(cfg), 0o644); err != nil {
		return 0, 0, err
	}
	iso := filepath.Join(work, "linux.iso")
	if out, err := exec.Command("grub-mkrescue", "-o", iso, root).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("grub-mkrescue: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	rc, err := exec.Command("bash", filepath.Join(repoRoot(), "scripts", "bochsrc.sh"), iso, strconv.Itoa(port), "1", "512").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("bochsrc: %w", err)
	}
	rcPath, contPath := filepath.Join(work, "bochsrc"), filepath.Join(work, "continue")
	if err := os.WriteFile(rcPath, rc, 0o644); err != nil {
		return 0, 0, err
	}
	if err := os.WriteFile(contPath, []byte("c\n"), 0o644); err != nil {
		return 0, 0, err
	}
	m, err := newMachine(name)
	if err != nil {
		return 0, 0, err
	}
	bochsOut, err := os.Create(filepath.Join(work, "bochs.out"))
	if err != nil {
		return 0, 0, err
	}
	defer bochsOut.Close()
	m.cmd = exec.Command("bochs", "-q", "-f", rcPath, "-rc", contPath)
	m.cmd.Stdout, m.cmd.Stderr = bochsOut, bochsOut
	start := time.Now()
	if err := m.start(); err != nil {
		return 0, 0, err
	}
	defer m.Close()
	conn, err := dialRetry(port, 30*time.Second, m.exited)
	if err != nil {
		return 0, 0, fmt.Errorf("bochs COM1: %w", err)
	}
	m.in = conn
	go m.pump(conn)
	if _, err := m.Expect(regexp.MustCompile(`doppel-guest: up: linux \S+, 1 cpus`), 15*time.Minute); err != nil {
		return 0, 0, err
	}
	for _, c := range []struct{ cmd, want string }{
		{"uname -r", `(?m)^6\.\S+-cloud-amd64\r?$`},
		{"grep -c processor /proc/cpuinfo", `(?m)^1\r?$`},
		{"echo bochs-4711 > /tmp/f && cat /tmp/f", `(?m)^bochs-4711\r?$`},
	} {
		if _, err := m.Expect(gosh, 2*time.Minute); err != nil {
			return 0, 0, err
		}
		if err := m.Type(c.cmd + "\n"); err != nil {
			return 0, 0, err
		}
		if _, err := m.Expect(regexp.MustCompile(c.want), 2*time.Minute); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", c.cmd, err)
		}
	}
	if _, err := m.Expect(gosh, 2*time.Minute); err != nil {
		return 0, 0, err
	}
	if err := m.Type("poweroff\n"); err != nil {
		return 0, 0, err
	}
	subs, err := m.Expect(powerDown, 5*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	wall = time.Since(start)
	guestSec, _ = strconv.ParseFloat(subs[1], 64)
	return guestSec, wall, nil
}
