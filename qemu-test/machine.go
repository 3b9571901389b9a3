// Package qemutest boots doppel's images in emulators and drives the serial
// console: QEMU TCG (fast, no VMX) with `-kernel build/doppel.bin`, and Bochs
// (an Intel CPU model with VT-x and EPT) from a GRUB ISO. Tests wait for
// console lines with timeouts and type at the shell; every run's serial output
// is kept under build/qemu-test/ for debugging.
package qemutest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Machine is one running emulator with its serial console.
type Machine struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser // serial input (typing)
	log  *os.File

	mu     sync.Mutex
	out    bytes.Buffer  // all serial output so far
	seen   int           // offset up to which Expect has consumed out
	grew   chan struct{} // closed and replaced whenever out grows
	exited chan struct{} // closed when the emulator process has exited
	err    error         // the process's exit error, valid after exited
	ended  bool          // serial stream closed
	// failOn, when set, ends Expect early: see FailOn.
	failOn *regexp.Regexp
	// stderr keeps the end of what the emulator wrote to its standard
	// error (QEMU's own complaints, e.g. a device model it lacks),
	// which goes to the log but not to the console Expect reads.
	stderr tailWriter
}

// tailWriter keeps the last tailMax bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 2048

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - tailMax; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// exitNote says how the emulator process ended, and what it last wrote
// to its standard error, for an error about a console that closed. It
// waits a little for the exit, which follows the console's end.
func (m *Machine) exitNote() string {
	if m.cmd == nil {
		return ""
	}
	select {
	case <-m.exited:
	case <-time.After(2 * time.Second):
		return " (the emulator still runs)"
	}
	how := "exit status 0"
	if m.err != nil {
		how = m.err.Error()
	}
	note := " (emulator: " + how
	if e := strings.TrimSpace(m.stderr.String()); e != "" {
		note += "; its standard error ends: " + e
	}
	return note + ")"
}

// FailOn makes every later Expect fail at once when the output it looks
// at matches re before (or without) what it waits for; nil turns that
// off. The Linux tests set doppel's line that the guest stopped: a guest
// that died then fails the test with doppel's reason and the tail, not
// after the test's timeouts for lines that cannot come any more.
func (m *Machine) FailOn(re *regexp.Regexp) {
	m.mu.Lock()
	m.failOn = re
	m.mu.Unlock()
}

func newMachine(name string) (*Machine, error) {
	name = strings.ReplaceAll(name, "/", "_") // subtests
	dir := filepath.Join(repoRoot(), "build", "qemu-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("serial log: %w", err)
	}
	return &Machine{name: name, log: log, grew: make(chan struct{}), exited: make(chan struct{})}, nil
}

// CPUTime is the host CPU time (user and system) the emulator process has
// used so far, from /proc (in clock ticks of 10 ms): what a run's work cost
// the host, which unlike wall time does not count the time the process
// waited for a core on a loaded machine.
func (m *Machine) CPUTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command's name, which is in parentheses and
	// may hold spaces: state is field 3, utime 14, stime 15.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("%s: /proc stat %q", m.name, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: /proc stat: %w", m.name, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil // USER_HZ is 100
}

// pump copies the serial stream into the buffer and the log until it ends.
func (m *Machine) pump(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m.log.Write(buf[:n])
			m.mu.Lock()
			m.out.Write(buf[:n])
			close(m.grew)
			m.grew = make(chan struct{})
			m.mu.Unlock()
		}
		if err != nil {
			m.mu.Lock()
			m.ended = true
			close(m.grew)
			m.grew = make(chan struct{})
			m.mu.Unlock()
			return
		}
	}
}

// Expect waits until the serial output after the previous match matches re,
// and returns the submatches. It fails on timeout or when the machine stops.
func (m *Machine) Expect(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		rest := m.out.Bytes()[m.seen:]
		loc := re.FindSubmatchIndex(rest)
		if m.failOn != nil {
			if bad := m.failOn.FindIndex(rest); bad != nil && (loc == nil || bad[0] < loc[0]) {
				line := string(rest[bad[0]:bad[1]])
				m.mu.Unlock()
				return nil, fmt.Errorf("%s: %q before %q; tail:\n%s", m.name, line, re, m.Tail(1500))
			}
		}
		if loc != nil {
			subs := make([]string, len(loc)/2)
			for i := range subs {
				if loc[2*i] >= 0 {
					subs[i] = string(rest[loc[2*i]:loc[2*i+1]])
				}
			}
			m.seen += loc[1]
			m.mu.Unlock()
			return subs, nil
		}
		grew, ended := m.grew, m.ended
		m.mu.Unlock()
		if ended {
			return nil, fmt.Errorf("%s: console closed before %q%s%s; tail:\n%s", m.name, re, m.resetNote(), m.exitNote(), m.Tail(1500))
		}
		select {
		case <-grew:
		case <-deadline.C:
			return nil, fmt.Errorf("%s: no %q within %v; tail:\n%s", m.name, re, timeout, m.Tail(1500))
		}
	}
}

// resetNote says whether QEMU logged a triple fault (runQEMU's -d
// cpu_reset log beside the serial log): an emulator that ended by itself
// under -no-reboot usually did so for one.
func (m *Machine) resetNote() string {
	path := strings.TrimSuffix(m.log.Name(), ".log") + ".qemu-reset.log"
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Triple fault") {
			return " (QEMU logged a triple fault: " + path + ")"
		}
	}
	return ""
}

// ExpectString is Expect for a literal string.
func (m *Machine) ExpectString(s string, timeout time.Duration) error {
	_, err := m.Expect(regexp.MustCompile(regexp.QuoteMeta(s)), timeout)
	return err
}

// Type sends keystrokes to the serial console, slowly enough for a 16550
// without FIFO handling in the guest to keep up.
func (m *Machine) Type(s string) error {
	for i := 0; i < len(s); i++ {
		if _, err := m.in.Write([]byte{s[i]}); err != nil {
			return fmt.Errorf("%s: typing: %w", m.name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// Output returns all serial output so far.
func (m *Machine) Output() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

// Tail returns the last n bytes of serial output.
func (m *Machine) Tail(n int) string {
	s := m.Output()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// Wait waits for the emulator to exit by itself (the kernel powered off).
func (m *Machine) Wait(timeout time.Duration) error {
	select {
	case <-m.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %v; tail:\n%s", m.name, timeout, m.Tail(1500))
	}
}

// Died says that and how the emulator ended ("" while it runs), for
// tests waiting on something other than its console (a TCP stream into
// the guest): QEMU's exit status, whether it logged a triple fault, the
// console's tail.
func (m *Machine) Died() string {
	select {
	case <-m.exited:
		return fmt.Sprintf("%s: the emulator exited (%v)%s; tail:\n%s", m.name, m.err, m.resetNote(), m.Tail(1500))
	default:
		return ""
	}
}

// CloseOnExit closes c when the emulator exits, so that reads from a
// dead machine's guest fail at once instead of at their deadlines.
func (m *Machine) CloseOnExit(c io.Closer) {
	go func() {
		<-m.exited
		c.Close()
	}()
}

// Close stops the emulator if it still runs and closes the log.
func (m *Machine) Close() {
	select {
	case <-m.exited:
	default:
		m.cmd.Process.Kill()
		<-m.exited
	}
	if m.in != nil {
		m.in.Close()
	}
	m.log.Close()
}

// dieWithTest makes cmd's process get SIGKILL when the test binary dies:
// a test that hits go test's -timeout is killed without its cleanups,
// and an emulator left running would take a core from every later test
// (one Bochs did for half an hour). PR_SET_PDEATHSIG survives exec (the
// bochs wrapper execs bochs-bin).
func dieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

func (m *Machine) start() error {
	dieWithTest(m.cmd)
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %w", m.name, m.cmd.Path, err)
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.exited)
	}()
	return nil
}

// imageDir holds the images the tests boot. TestMain builds them there, not
// in build/, so that a developer rebuilding build/ while the tests run cannot
// swap the kernel under them.
func imageDir() string { return filepath.Join(repoRoot(), "build", "qemu-test", "image") }

// imagePath names one file of the tested image (doppel.bin, testguest.bin).
func imagePath(name string) string { return filepath.Join(imageDir(), name) }

// repoRoot is the directory holding go.mod, found from the test's directory.
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}
