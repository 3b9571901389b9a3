// Command guestinit is /init of doppel's u-root initramfs. It does what
// u-root's init does for a shell on the console (libinit: environment,
// /proc, /sys, /dev, /tmp), loads the kernel modules the initramfs
// carries (the virtio-net stack, in dependency order), configures the
// network from the kernel command line (net.go), prints the banner
// the tests wait for, and runs the shell on the console, again whenever
// it exits (PID 1 must not exit).
//
// It replaces u-root's init because u-root v0.16.0's init starts the shell
// with its output through a pipe (multi-console output) after a uinit,
// and the shell then exits at once on a serial console (u-root issue
// #3645), which panics the kernel.
package main

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/u-root/u-root/pkg/libinit"
	"golang.org/x/sys/unix"
)

// modules in load order: each needs the ones before it (their modinfo
// "depends=").
var modules = []string{
	"kernel/drivers/virtio/virtio_ring.ko",
	"kernel/drivers/virtio/virtio.ko",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"kernel/drivers/virtio/virtio_pci.ko",
	"kernel/net/core/failover.ko",
	"kernel/drivers/net/net_failover.ko",
	"kernel/drivers/net/virtio_net.ko",
}

const shell = "/bin/defaultsh"

func main() {
	log.SetPrefix("guestinit: ")
	log.SetFlags(0)
	libinit.SetEnv()
	libinit.CreateRootfs()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		log.Printf("uname: %v", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	loaded := loadModules(filepath.Join("/lib/modules", release))
	// The boot's length in the guest's own clock: /proc/uptime counts
	// from the TSC's zero (Linux takes sched_clock at timekeeping init as
	// the boot offset), and the kernel log's first timestamp after zero
	// is where the TSC clock took over, early in setup_arch: the time
	// before the kernel ran (firmware, bootloader, or nothing under
	// doppel) is that stamp, the kernel's own boot the difference.
	fmt.Printf("doppel-guest: boot: uptime %s s, kernel clock from %s s\n", uptime(), firstStamp())
	cmdline, _ := os.ReadFile("/proc/cmdline")
	setupNet(string(cmdline))
	fmt.Printf("doppel-guest: up: linux %s, %d cpus, modules %s\n", release, runtime.NumCPU(), loaded)
	for {
		cmd := exec.Command(shell)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Run(); err != nil {
			log.Printf("%s: %v", shell, err)
		}
		reap()
		fmt.Println("doppel-guest: shell exited; starting another")
		time.Sleep(time.Second)
	}
}

// uptime is /proc/uptime's first field, seconds since boot.
func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// firstStamp is the first nonzero timestamp in the kernel log ("[    1.234567]").
func firstStamp() string {
	buf := make([]byte, 1<<20)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		i, j := strings.IndexByte(line, '['), strings.IndexByte(line, ']')
		if i < 0 || j < i {
			continue
		}
		if ts := strings.TrimSpace(line[i+1 : j]); strings.Trim(ts, "0.") != "" {
			return ts
		}
	}
	return "?"
}

// reap collects orphans that were reparented to init.
func reap() {
	for {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}

// loadModules inserts the modules found under dir and says which.
func loadModules(dir string) string {
	var done []string
	for _, m := range modules {
		f, err := os.Open(filepath.Join(dir, m))
		if err != nil {
			continue // not in this initramfs
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		name := strings.TrimSuffix(filepath.Base(m), ".ko")
		if err != nil && err != unix.EEXIST {
			log.Printf("%s: %v", name, err)
			continue
		}
		done = append(done, name)
	}
	if len(done) == 0 {
		return "none"
	}
	return strings.Join(done, ",")
}
