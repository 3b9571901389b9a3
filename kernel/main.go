// Command kernel is doppel's bare-metal kernel: the Go program the boot
// layer (boot/) runs in ring 0. It parses the boot flags, starts the console
// log, reports the CPU and memory, starts the boot-time subsystems, and then
// either runs the self-tests (doppel.selftest=1) and powers off, or serves
// the interactive shell on the serial console.
//
// It is an ordinary GOOS=linux static binary, so it also runs as a process on
// a Linux host for development: `go run ./kernel doppel.selftest=1`. There
// /proc/doppel/* is absent, privileged instructions are skipped, and halt,
// reboot and power-off refuse to touch the host.
//
// A fatal error prints every goroutine's stack and exits non-zero; the boot
// layer then halts or reboots as doppel.fatal says.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/doppel-ft/doppel/board"
)

func main() {
	debug.SetTraceback("all") // a crash prints every goroutine, as GOTRACEBACK=all would
	os.Exit(run(os.Args[1:], stdin{}, os.Stdout))
}

// Exit codes. The boot layer powers off on 0 and follows doppel.fatal
// otherwise (boot/CONTRACT.md, "Exit").
const (
	exitOK        = 0
	exitTestsFail = 1
	exitFatal     = 2
)

// run is the kernel, parameterised by its console so host tests can drive
// it.
func run(args []string, in io.Reader, out io.Writer) int {
	guestConsole = newConsoleMux(in, out) // a guest may own the console (kernel/guest.go)
	in = guestConsole
	k, err := boot(args, out)
	if err != nil {
		return fatal(k, err)
	}
	if k.flags.Bool(board.FlagSelftest) {
		return k.selftest()
	}
	if err := k.shell(in); err != nil {
		return fatal(k, err)
	}
	return exitOK
}

// fatal reports err with every goroutine's stack and returns the exit code
// for a fatal error.
func fatal(k *kernel, err error) int {
	msg := fmt.Sprintf("kernel: fatal: %v\n", err)
	if k != nil && k.log != nil {
		k.log.Printf("kernel", "fatal: %v", err)
		msg = ""
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	fmt.Fprintf(os.Stderr, "%sgoroutine stacks:\n%s\n", msg, buf)
	return exitFatal
}

// stdin reads the console with plain read(2) on fd 0, the only thing the
// boot layer promises for it (it blocks until a byte has arrived).
type stdin struct{}

func (stdin) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(0, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read console: %w", err)
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// words renders the command line for the log.
func words(args []string) string {
	if len(args) == 0 {
		return "(empty)"
	}
	return strings.Join(args, " ")
}
