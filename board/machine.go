package board

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Files the boot layer serves (boot/CONTRACT.md, "Files the layer serves").
const (
	MemmapPath  = "/proc/doppel/memmap"
	ModulesPath = "/proc/doppel/modules"
	CPUsPath    = "/proc/doppel/cpus"
	StatsPath   = "/proc/doppel/stats"
	MeminfoPath = "/proc/meminfo"
	CmdlinePath = "/proc/cmdline"
)

// OnBareMetal reports whether the kernel runs on the doppel boot layer (in
// ring 0) rather than as a process on a Linux host. It is true iff
// /proc/doppel/memmap exists.
func OnBareMetal() bool {
	_, err := os.Stat(MemmapPath)
	return err == nil
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
