package selftest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/doppel-ft/doppel/board"
)

// layerFiles checks the files boot/CONTRACT.md promises ("Files the layer
// serves") parse and agree with each other and with what the runtime sees.
// On a host only the parts that hold for Linux run: /proc/meminfo has the
// standard keys and unknown paths give ENOENT.
func layerFiles(ctx context.Context, cfg *Config) error {
	mi, err := board.ReadMeminfo()
	if err != nil {
		return err
	}
	for _, key := range []string{"MemTotal", "MemFree"} {
		if _, err := mi.Get(key); err != nil {
			return err
		}
	}
	if mi["MemFree"] > mi["MemTotal"] {
		return fmt.Errorf("MemFree %d > MemTotal %d", mi["MemFree"], mi["MemTotal"])
	}
	const missing = "/proc/doppel/no-such-file"
	if _, err := board.ReadFile(missing); !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("reading %s: %v, want ENOENT", missing, err)
	}
	if !cfg.BareMetal {
		return nil
	}
	checks := []func(board.Meminfo) error{checkMemmap, checkCPUFile, checkStats, checkCmdline}
	for _, check := range checks {
		if err := check(mi); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// checkMemmap: the map parses, has usable RAM, one kernel region, and a
// reserved region the size meminfo's DoppelReserved says.
func checkMemmap(mi board.Meminfo) error {
	m, err := board.ReadMemmap()
	if err != nil {
		return err
	}
	if m.Usable() == 0 {
		return fmt.Errorf("%s: no usable RAM", board.MemmapPath)
	}
	if n := len(m.Of(board.RegionKernel)); n != 1 {
		return fmt.Errorf("%s: %d kernel regions, want 1", board.MemmapPath, n)
	}
	reserved, err := mi.Get("DoppelReserved")
	if err != nil {
		return err
	}
	if got := m.Total(board.RegionDoppelReserved); got != reserved {
		return fmt.Errorf("%s: doppel-reserved totals %s, meminfo DoppelReserved says %s",
			board.MemmapPath, board.FormatBytes(got), board.FormatBytes(reserved))
	}
	if mi["MemTotal"] > m.Total(board.RegionUsable) {
		return fmt.Errorf("MemTotal %s exceeds the usable RAM in the map, %s",
			board.FormatBytes(mi["MemTotal"]), board.FormatBytes(m.Total(board.RegionUsable)))
	}
	return nil
}

// checkCPUFile: the CPU list parses and its online count is what
// sched_getaffinity gave the runtime.
func checkCPUFile(board.Meminfo) error {
	cpus, err := board.ReadCPUs()
	if err != nil {
		return err
	}
	if online := len(board.Online(cpus)); online != runtime.NumCPU() {
		return fmt.Errorf("%s lists %d online CPUs, the runtime sees %d", board.CPUsPath, online, runtime.NumCPU())
	}
	return nil
}

// checkStats: the counters are "key value" lines and include syscalls.
func checkStats(board.Meminfo) error {
	m, err := layerCounters(&Config{BareMetal: true})
	if err != nil {
		return err
	}
	if _, ok := m["syscalls"]; !ok {
		return fmt.Errorf("%s has no syscalls counter", board.StatsPath)
	}
	return nil
}

// checkCmdline: /proc/cmdline holds the words argv got.
func checkCmdline(board.Meminfo) error {
	data, err := board.ReadFile(board.CmdlinePath)
	if err != nil {
		return err
	}
	got, want := strings.Fields(string(data)), os.Args[1:]
	if strings.Join(got, " ") != strings.Join(want, " ") {
		return fmt.Errorf("%s is %q, argv has %q", board.CmdlinePath, got, want)
	}
	return nil
}
