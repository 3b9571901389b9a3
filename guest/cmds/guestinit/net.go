package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// The guest's network, from the kernel command line:
//
//	doppel.ip=<ipv4>/<bits>   address of the first Ethernet interface (eth0),
//	                          brought up with lo
//	doppel.serve=<port>       run "workload -serve <port> -quiet" in the
//	                          background: the numbered TCP stream
//	doppel.lines=<interval>   with doppel.serve: the workload also prints
//	                          its numbered lines on the console, one per
//	                          interval, rewriting 1 MiB between lines (the
//	                          FT tests' serial output, whose numbers must
//	                          continue across a failover)
//	doppel.spin=<interval>    with doppel.serve: instead of the lines, the
//	                          workload checksums 1 MiB in a loop and prints
//	                          its rate every interval (the FT slowdown)
//
// Both print a "doppel-guest: net:" line the tests wait for.

// cmdlineValue returns the value of key=value on the kernel command line.
func cmdlineValue(cmdline, key string) (string, bool) {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// setupNet configures the network as the command line says; it reports
// what it did or why it could not, and never stops the boot.
func setupNet(cmdline string) {
	if v, ok := cmdlineValue(cmdline, "doppel.ip"); ok {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is4() {
			fmt.Printf("doppel-guest: net: doppel.ip=%s: want <ipv4>/<bits>\n", v)
		} else if err := ifUp("lo", netip.Prefix{}); err != nil {
			fmt.Printf("doppel-guest: net: lo: %v\n", err)
		} else if err := ifUp("eth0", p); err != nil {
			fmt.Printf("doppel-guest: net: eth0: %v\n", err)
		} else {
			fmt.Printf("doppel-guest: net: eth0 %s mac %s\n", p, hwAddr("eth0"))
		}
	}
	if port, ok := cmdlineValue(cmdline, "doppel.serve"); ok {
		args := []string{"-serve", port, "-quiet"}
		if iv, ok := cmdlineValue(cmdline, "doppel.lines"); ok {
			args = []string{"-serve", port, "-mib", "1", "-interval", iv}
		}
		if iv, ok := cmdlineValue(cmdline, "doppel.spin"); ok {
			args = []string{"-serve", port, "-mib", "1", "-spin", "-interval", iv}
		}
		cmd := exec.Command("workload", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Printf("doppel-guest: net: workload -serve %s: %v\n", port, err)
		}
	}
}

// ifUp gives the interface address p (unless p is zero) and sets it up,
// with the ioctls ifconfig uses (netdevice(7)).
func ifUp(name string, p netip.Prefix) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if p.IsValid() {
		a := p.Addr().As4()
		if err := ifr.SetInet4Addr(a[:]); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
			return fmt.Errorf("SIOCSIFADDR %v: %w", p.Addr(), err)
		}
		mask := ^uint32(0) << (32 - p.Bits())
		if p.Bits() == 0 {
			mask = 0
		}
		if err := ifr.SetInet4Addr([]byte{byte(mask >> 24), byte(mask >> 16), byte(mask >> 8), byte(mask)}); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
			return fmt.Errorf("SIOCSIFNETMASK /%d: %w", p.Bits(), err)
		}
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS up: %w", err)
	}
	return nil
}

// hwAddr is the interface's MAC address as sysfs shows it.
func hwAddr(name string) string {
	b, err := os.ReadFile("/sys/class/net/" + name + "/address")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
