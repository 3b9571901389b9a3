package board

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Files the boot layer serves (boot/CONTRACT.md, "Files the layer serves").
const (
	MemmapPath   = "/proc/doppel/memmap"
	ModulesPath  = "/proc/doppel/modules"
	CPUsPath     = "/proc/doppel/cpus"
	StatsPath    = "/proc/doppel/stats"
	LockStatPath = "/proc/doppel/lockstat"
	SyscallsPath = "/proc/doppel/syscalls"
	MeminfoPath  = "/proc/meminfo"
	CmdlinePath  = "/proc/cmdline"
)

// OnBareMetal reports whether the kernel runs on the doppel boot layer (in
// ring 0) rather than as a process on a Linux host. It is true iff
// /proc/doppel/memmap exists; the answer is computed once.
func OnBareMetal() bool {
	bareMetalOnce.Do(func() {
		// openat, not stat: the layer answers openat and read only.
		fd, err := syscall.Open(MemmapPath, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == nil {
			syscall.Close(fd)
			onBareMetal = true
		}
	})
	return onBareMetal
}

var (
	bareMetalOnce sync.Once
	onBareMetal   bool
)

// LayerStats reads the boot layer's counters (StatsPath: "key value"
// lines of unsigned numbers: syscalls, context_switches, timer_ticks, ipis,
// irqs and more).
func LayerStats() (map[string]uint64, error) { return readCounters(StatsPath) }

// SyscallCounts reads how often each system call took the layer's lock
// since boot (SyscallsPath), keyed by the call's number in decimal.
func SyscallCounts() (map[string]uint64, error) { return readCounters(SyscallsPath) }

// readCounters reads a file of "key value" lines of unsigned numbers.
func readCounters(path string) (map[string]uint64, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := parseCounters(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// parseCounters parses "key value" lines of unsigned numbers.
func parseCounters(data string) (map[string]uint64, error) {
	m := make(map[string]uint64)
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %q is not \"key value\"", line)
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, err
		}
		m[f[0]] = v
	}
	return m, nil
}

// LockHolder is one line of LockStatPath: the big lock's use by one kind
// of holder.
type LockHolder struct {
	Holder string // "sys<n>" (system call n) or "vec<v>" (vector v)
	Count  uint64 // acquisitions
	Held   uint64 // TSC ticks held
	Waits  uint64 // times another CPU found it held
	Waited uint64 // TSC ticks other CPUs spun while it held the lock
}

// LockStats reads the boot layer's lock statistics.
func LockStats() ([]LockHolder, error) {
	data, err := ReadFile(LockStatPath)
	if err != nil {
		return nil, err
	}
	return ParseLockStats(data)
}

// ParseLockStats parses the text of LockStatPath.
func ParseLockStats(data []byte) ([]LockHolder, error) {
	var out []LockHolder
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 5 || !strings.HasPrefix(f[0], "sys") && !strings.HasPrefix(f[0], "vec") {
			return nil, fmt.Errorf("%s: line %q is not \"holder count held waits waited\"", LockStatPath, line)
		}
		h := LockHolder{Holder: f[0]}
		for i, p := range []*uint64{&h.Count, &h.Held, &h.Waits, &h.Waited} {
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: line %q: %w", LockStatPath, line, err)
			}
			*p = v
		}
		out = append(out, h)
	}
	return out, nil
}

// ReadFile returns the contents of a file the boot layer serves (or the
// host's file of that name). It uses only openat, read and close, which is
// all the layer promises (no fstat, no poller), unlike os.ReadFile.
func ReadFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var data []byte
	buf := make([]byte, 4096)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n <= 0 {
			return data, nil
		}
		data = append(data, buf[:n]...)
	}
}

// ErrNotBareMetal is returned by operations that would act on the host
// machine itself when doppel runs as an ordinary process.
var ErrNotBareMetal = errors.New("not on bare metal (no " + MemmapPath + ")")

// PowerAction is what to do with the machine.
type PowerAction int

// Power actions, answered by the boot layer's reboot system call.
const (
	PowerOff PowerAction = iota // ACPI / emulator shutdown
	Restart                     // keyboard controller reset, then triple fault
	Halt                        // all CPUs stop with interrupts off
)

func (a PowerAction) String() string {
	switch a {
	case PowerOff:
		return "power off"
	case Restart:
		return "restart"
	case Halt:
		return "halt"
	}
	return fmt.Sprintf("PowerAction(%d)", int(a))
}

func (a PowerAction) rebootCmd() int {
	switch a {
	case Restart:
		return syscall.LINUX_REBOOT_CMD_RESTART
	case Halt:
		return syscall.LINUX_REBOOT_CMD_HALT
	}
	return syscall.LINUX_REBOOT_CMD_POWER_OFF
}

// Power powers off, restarts or halts the machine through reboot(2). On a
// Linux host it refuses with ErrNotBareMetal and does nothing: it must never
// reboot the development machine. On success it does not return.
func Power(a PowerAction) error {
	if !OnBareMetal() {
		return fmt.Errorf("board: %s: %w", a, ErrNotBareMetal)
	}
	if err := syscall.Reboot(a.rebootCmd()); err != nil {
		return fmt.Errorf("board: %s: reboot(2): %w", a, err)
	}
	return fmt.Errorf("board: %s: reboot(2) returned", a)
}

// DrainConsole waits until everything written to the console (fd 1) has
// gone to the UART: tcdrain(3), ioctl TCSBRK with a nonzero argument. The
// boot layer queues console output and sends it by interrupt, so a write
// returns before the bytes have left the machine; output that the world
// must have seen before the machine may die (a protected guest's released
// lines) is drained. On a Linux host it does nothing: a host's stdout is
// no console of doppel's.
func DrainConsole() error {
	if !OnBareMetal() {
		return nil
	}
	const tcsbrk = 0x5409 // TCSBRK, asm-generic/ioctls.h
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, 1, tcsbrk, 1); e != 0 {
		return fmt.Errorf("board: drain the console: %w", e)
	}
	return nil
}
