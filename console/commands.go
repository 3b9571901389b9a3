package console

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/doppel-ft/doppel/board"
)

// System is what the built-in commands ask of the machine. The kernel wires
// the real machine (Machine); tests wire fakes.
type System struct {
	Log          *Log
	Uptime       func() time.Duration
	CPUReport    func(w io.Writer) error
	MemoryReport func(w io.Writer) error
	Modules      func(w io.Writer) error
	Stats        func() ([]byte, error)
	LockStats    func() ([]board.LockHolder, error)
	Flags        func(w io.Writer) error
	Power        func(board.PowerAction) error
}

// Builtins returns the standard command table over sys, in the order help
// lists it.
func Builtins(sys System) []Command {
	return []Command{
		{Name: "mem", Help: "memory: /proc/meminfo, Go heap, memory map", Run: report(sys.MemoryReport)},
		{Name: "cpu", Help: "CPU identity and virtualization features", Run: report(sys.CPUReport)},
		{Name: "uptime", Help: "time since boot", Run: func(w io.Writer, _ []string) error {
			d := sys.Uptime()
			_, err := fmt.Fprintf(w, "up %s (%.6f s)\n", d.Truncate(time.Second), d.Seconds())
			return err
		}},
		{Name: "log", Args: "[n]", Help: "the last n log lines (all kept lines by default)", Run: func(w io.Writer, args []string) error {
			return logCommand(w, sys.Log, args)
		}},
		{Name: "poweroff", Help: "power the machine off (the ACPI S5 the firmware's tables give)", Run: power(sys.Power, board.PowerOff)},
		{Name: "halt", Help: "stop all CPUs", Run: power(sys.Power, board.Halt)},
		{Name: "reboot", Help: "restart the machine", Run: power(sys.Power, board.Restart)},
		{Name: "stats", Args: "[lock]", Help: "boot layer counters (" + board.StatsPath + "); lock: who held the layer's lock, longest first (" + board.LockStatPath + ")", Run: func(w io.Writer, args []string) error {
			if len(args) > 0 {
				if args[0] != "lock" || len(args) > 1 {
					return fmt.Errorf("want no argument or \"lock\"")
				}
				return lockReport(w, sys.LockStats)
			}
			data, err := sys.Stats()
			if err != nil {
				return err
			}
			_, err = w.Write(data)
			return err
		}},
		{Name: "modules", Help: "multiboot modules (guest kernels, initrds)", Run: report(sys.Modules)},
		{Name: "flags", Help: "boot flags and their values", Run: report(sys.Flags)},
	}
}

func report(fn func(io.Writer) error) func(io.Writer, []string) error {
	return func(w io.Writer, _ []string) error {
		if fn == nil {
			return errors.New("not available")
		}
		return fn(w)
	}
}

func power(fn func(board.PowerAction) error, a board.PowerAction) func(io.Writer, []string) error {
	return func(w io.Writer, _ []string) error {
		fmt.Fprintf(w, "%s...\n", a)
		return fn(a)
	}
}

func logCommand(w io.Writer, log *Log, args []string) error {
	lines := log.Lines()
	if len(args) > 1 {
		return errors.New("usage: log [n]")
	}
	if len(args) == 1 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return fmt.Errorf("bad count %q: want a number of lines", args[0])
		}
		if n < len(lines) {
			lines = lines[len(lines)-n:]
		}
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

// Machine returns a System over the live machine: the boot layer's files
// on bare metal (the host's /proc on a host), runtime statistics, and
// board.Power.
func Machine(log *Log, cpuReport func(io.Writer) error, flags func(io.Writer) error) System {
	return System{
		Log:          log,
		Uptime:       SinceBoot,
		CPUReport:    cpuReport,
		MemoryReport: MemoryReport,
		Modules:      ModulesReport,
		Stats:        func() ([]byte, error) { return board.ReadFile(board.StatsPath) },
		LockStats:    board.LockStats,
		Flags:        flags,
		Power:        board.Power,
	}
}

// MemoryReport prints what the layer (or host) says about memory, what the
// Go runtime holds, and the memory map when there is one.
func MemoryReport(w io.Writer) error {
	var errs []error
	if mi, err := board.ReadMeminfo(); err != nil {
		errs = append(errs, err)
	} else {
		for _, k := range []string{"MemTotal", "MemFree", "MemAvailable", "DoppelReserved"} {
			if v, ok := mi[k]; ok {
				fmt.Fprintf(w, "%-16s %10s\n", k+":", board.FormatBytes(v))
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "go: sys %s, heap in use %s, heap idle %s, released %s, stacks %s\n",
		board.FormatBytes(ms.Sys), board.FormatBytes(ms.HeapInuse), board.FormatBytes(ms.HeapIdle),
		board.FormatBytes(ms.HeapReleased), board.FormatBytes(ms.StackSys))
	fmt.Fprintf(w, "go: %d GCs, %d goroutines, next GC at %s\n",
		ms.NumGC, runtime.NumGoroutine(), board.FormatBytes(ms.NextGC))
	if m, err := board.ReadMemmap(); err == nil {
		errs = append(errs, m.WriteReport(w))
	} else if board.OnBareMetal() {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(w, "memory map: none (not on bare metal)\n")
	}
	return errors.Join(errs...)
}

// ModulesReport lists the multiboot modules the layer loaded.
func ModulesReport(w io.Writer) error {
	mods, err := board.ReadModules()
	if err != nil {
		return err
	}
	if len(mods) == 0 {
		_, err := fmt.Fprintln(w, "no modules")
		return err
	}
	for _, m := range mods {
		if _, err := fmt.Fprintf(w, "%#x-%#x %8s %s\n", m.Start, m.End, board.FormatBytes(m.Size()), m.Name); err != nil {
			return err
		}
	}
	return nil
}

// lockReport prints the boot layer's lock statistics, the longest holders
// first: holder (system call or vector), acquisitions, TSC ticks held and
// per hold, and how often and how long other CPUs waited for it.
func lockReport(w io.Writer, stats func() ([]board.LockHolder, error)) error {
	if stats == nil {
		return errors.New("not available")
	}
	hs, err := stats()
	if err != nil {
		return err
	}
	slices.SortStableFunc(hs, func(a, b board.LockHolder) int { return cmp.Compare(b.Held, a.Held) })
	fmt.Fprintf(w, "%-8s %10s %14s %10s %10s %14s\n", "holder", "count", "held ticks", "per hold", "waits", "waited ticks")
	for _, h := range hs {
		fmt.Fprintf(w, "%-8s %10d %14d %10d %10d %14d\n", h.Holder, h.Count, h.Held, h.Held/max(h.Count, 1), h.Waits, h.Waited)
	}
	return nil
}
