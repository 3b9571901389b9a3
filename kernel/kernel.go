package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strings"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/console"
	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/ftmirror/pagediff"
	"github.com/doppel-ft/doppel/selftest"
	xcpu "golang.org/x/sys/cpu"
)

// hostChurnCap is how much the allocation churn self-test allocates on a
// Linux host unless doppel.selftest.churn says otherwise: enough to cycle
// the heap, cheap enough for a quick smoke run.
const hostChurnCap = 256 << 20

// kernel is the state the boot steps share.
type kernel struct {
	bareMetal bool
	out       io.Writer
	flags     *board.Values
	log       *console.Log
	features  board.Features
	net       *netState         // the network stack, if any NIC is up (net.go)
	commands  []console.Command // shell commands added by subsystems
}

// boot runs the boot steps up to the point where the kernel either tests
// itself or serves the shell.
func boot(args []string, out io.Writer) (*kernel, error) {
	// No console.CRLF here: the layer already sends "\r\n" for every "\n"
	// written to fd 1 and 2 (which also covers the runtime's crash output).
	k := &kernel{bareMetal: board.OnBareMetal(), out: out}
	flags, flagErrs := board.Known.Parse(args)
	k.flags = flags
	k.log = console.NewLog(k.out, int(flags.Int(board.FlagLogLines)), nil)

	where := "as a Linux process (host mode: no /proc/doppel, no privileged instructions)"
	if k.bareMetal {
		where = "on bare metal"
	}
	k.log.Printf("kernel", "doppel (%s %s/%s) %s", runtime.Version(), runtime.GOOS, runtime.GOARCH, where)
	k.log.Printf("kernel", "command line: %s", words(args))
	for _, err := range flagErrs {
		k.log.Printf("board", "%s", trimBoard(err))
	}
	registerVMXReport(k.bareMetal)
	registerSVMReport(k.bareMetal)
	k.reportCPU()
	k.reportMemory()
	k.reportModules()
	if err := startSubsystems(k); err != nil {
		return k, err
	}
	k.log.Printf("kernel", "boot done at %.3f s since boot, %d goroutines", console.SinceBoot().Seconds(), runtime.NumGoroutine())
	return k, nil
}

// trimBoard drops the "board: " prefix an error already carries when it is
// logged under the board subsystem.
func trimBoard(err error) string { return strings.TrimPrefix(err.Error(), "board: ") }

// cpuReport writes the CPU feature report. IA32_FEATURE_CONTROL is read only
// on bare metal: RDMSR faults on a host.
func (k *kernel) cpuReport(w io.Writer) error {
	n, source := board.CPUCount()
	return board.WriteCPUReport(w, &k.features, n, source)
}

func (k *kernel) reportCPU() {
	k.features = board.ReadFeatures(cpu.CPUID)
	if k.bareMetal {
		k.features.ReadFeatureControl(cpu.RDMSR)
	}
	if err := k.cpuReport(k.log.Writer("cpu")); err != nil {
		k.log.Printf("cpu", "report: %v", err)
	}
	// What Go's own feature detection (CPUID.OSXSAVE and XGETBV, as the
	// runtime's internal/cpu does) finds: AVX and AVX-512 where the CPU
	// has them and the boot layer enabled their state (boot/doc.go).
	k.log.Printf("cpu", "Go sees: AVX %v, AVX2 %v, AVX-512F %v; page-diff loops: %s",
		xcpu.X86.HasAVX, xcpu.X86.HasAVX2, xcpu.X86.HasAVX512F, pagediff.Impl())
}

func (k *kernel) reportMemory() {
	if mi, err := board.ReadMeminfo(); err != nil {
		k.log.Printf("mem", "%v", err)
	} else {
		line := ""
		for _, key := range []string{"MemTotal", "MemFree", "DoppelReserved"} {
			if v, ok := mi[key]; ok {
				line += fmt.Sprintf(" %s %s", key, board.FormatBytes(v))
			}
		}
		k.log.Printf("mem", "meminfo:%s", line)
	}
	m, err := board.ReadMemmap()
	switch {
	case errors.Is(err, fs.ErrNotExist) && !k.bareMetal:
		k.log.Printf("mem", "no memory map (not on bare metal)")
	case err != nil:
		k.log.Printf("mem", "%v", err)
	default:
		if err := m.WriteReport(k.log.Writer("board")); err != nil {
			k.log.Printf("mem", "report: %v", err)
		}
	}
}

func (k *kernel) reportModules() {
	mods, err := board.ReadModules()
	if err != nil {
		if k.bareMetal {
			k.log.Printf("board", "%v", err)
		}
		return
	}
	k.log.Printf("board", "%d multiboot modules", len(mods))
	for _, m := range mods {
		k.log.Printf("board", "  %#x-%#x %8s %s", m.Start, m.End, board.FormatBytes(m.Size()), m.Name)
	}
}

// selftestConfig sizes the self-tests for this machine.
func (k *kernel) selftestConfig() selftest.Config {
	cfg := selftest.Config{
		ChurnBytes: k.flags.Size(board.FlagSelftestChurn),
		SleepSlack: k.flags.Duration(board.FlagSelftestSlack),
		Timeout:    k.flags.Duration(board.FlagSelftestTimeout),
		BareMetal:  k.bareMetal,
		Logf:       func(format string, args ...any) { k.log.Printf("selftest", format, args...) },
	}
	if k.bareMetal {
		if cpus, err := board.ReadCPUs(); err == nil {
			cfg.CPUs = cpus
		} else {
			k.log.Printf("selftest", "%v", err)
		}
	}
	if cfg.ChurnBytes == 0 {
		cfg.ChurnBytes = hostChurnCap
		if k.bareMetal {
			// More than the machine's RAM: it can only finish if freed
			// memory is reused or returned.
			cfg.ChurnBytes = 1 << 30
			if mi, err := board.ReadMeminfo(); err == nil && mi["MemTotal"] > 0 {
				cfg.ChurnBytes = mi["MemTotal"] + mi["MemTotal"]/4
			}
		}
	}
	return cfg
}

// selftest runs the self-tests, then powers the machine off (on a host it
// just returns the result as the exit code).
func (k *kernel) selftest() int {
	cfg := k.selftestConfig()
	k.log.Printf("selftest", "running %d tests (churn %s, sleep slack %v, timeout %v each)",
		len(selftest.All), board.FormatBytes(cfg.ChurnBytes), cfg.SleepSlack, cfg.Timeout)
	start := time.Now()
	res := selftest.Run(k.out, cfg, selftest.All)
	k.log.Printf("selftest", "done in %v", time.Since(start).Round(time.Millisecond))
	code := exitOK
	if !res.OK() {
		code = exitTestsFail
	}
	if !k.bareMetal {
		return code
	}
	err := board.Power(board.PowerOff)
	k.log.Printf("kernel", "%v", err) // reached only if power-off failed
	return code
}

// shell serves the interactive shell on the console until its input ends.
func (k *kernel) shell(in io.Reader) error {
	sys := console.Machine(k.log, k.cpuReport, func(w io.Writer) error {
		_, err := k.flags.WriteTo(w)
		return err
	})
	sh := &console.Shell{
		In:       in,
		Out:      k.out,
		Echo:     k.bareMetal, // a host terminal echoes by itself
		Commands: append(append(console.Builtins(sys), crashCommand, restoreCommand, guestCommand), append(nicCommands(), k.commands...)...),
	}
	k.log.Printf("kernel", "shell on the console; type help")
	if err := sh.Run(); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	io.WriteString(k.out, "\n")
	k.log.Printf("kernel", "console input ended")
	return nil
}

// crashCommand panics on purpose in a fresh goroutine, to check that a
// crash prints every stack and the layer then follows doppel.fatal.
var crashCommand = console.Command{
	Name: "crash",
	Help: "panic on purpose (tests the fatal path and doppel.fatal)",
	Run: func(w io.Writer, _ []string) error {
		done := make(chan struct{})
		go func() {
			defer close(done)
			panic("kernel: crash requested from the shell")
		}()
		<-done
		return nil
	},
}
