package console

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Log writes timestamped lines to an output and keeps the most recent ones
// in a ring for the shell's log command. It is safe for concurrent use.
type Log struct {
	mu    sync.Mutex
	out   io.Writer
	since func() time.Duration
	ring  []string // the last len(ring) lines; ring[next] is the oldest once full
	next  int
	full  bool
}

// NewLog returns a log writing to out (nil: keep lines only) that keeps the
// last lines lines, stamped with since (nil: SinceBoot).
func NewLog(out io.Writer, lines int, since func() time.Duration) *Log {
	if lines < 1 {
		lines = 1
	}
	if since == nil {
		since = SinceBoot
	}
	return &Log{out: out, since: since, ring: make([]string, lines)}
}

// Printf logs one message for subsystem. Each line of a multi-line message
// gets its own timestamp and prefix.
func (l *Log) Printf(subsystem, format string, args ...any) {
	l.print(subsystem, fmt.Sprintf(format, args...))
}

func (l *Log) print(subsystem, msg string) {
	stamp := FormatStamp(l.since())
	msg = strings.TrimRight(msg, "\n")
	var b strings.Builder
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(msg, "\n") {
		s := fmt.Sprintf("%s %s: %s", stamp, subsystem, line)
		l.ring[l.next] = s
		l.next = (l.next + 1) % len(l.ring)
		l.full = l.full || l.next == 0
		b.WriteString(s)
		b.WriteByte('\n')
	}
	if l.out != nil {
		io.WriteString(l.out, b.String()) // a console that fails has nowhere to report it
	}
}

// Lines returns the kept lines, oldest first.
func (l *Log) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		return append([]string(nil), l.ring[:l.next]...)
	}
	return append(append([]string(nil), l.ring[l.next:]...), l.ring[:l.next]...)
}

// Writer returns an io.Writer that logs each line written to it for
// subsystem, for reports that are written to a Writer.
func (l *Log) Writer(subsystem string) io.Writer {
	return &logWriter{log: l, subsystem: subsystem}
}

type logWriter struct {
	log       *Log
	subsystem string
	partial   []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := strings.IndexByte(string(w.partial), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.log.print(w.subsystem, string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
}

// FormatStamp renders a time since boot the way Linux's printk does:
// "[%5d.%06d]", seconds and microseconds.
func FormatStamp(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("[%5d.%06d]", d/time.Second, (d%time.Second)/time.Microsecond)
}

var (
	bootOffset = monotonicNow() // CLOCK_MONOTONIC when the process started
	startTime  = time.Now()
)

// SinceBoot returns the time since the machine booted: CLOCK_MONOTONIC, which
// counts from boot both on Linux and under the boot layer. It is read once
// and then advanced with Go's monotonic clock, so it costs no system call.
func SinceBoot() time.Duration {
	return bootOffset + time.Since(startTime)
}

// monotonicNow reads CLOCK_MONOTONIC through clock_gettime(2); 0 if the
// system call fails, which makes SinceBoot the process's age.
func monotonicNow() time.Duration {
	const clockMonotonic = 1 // CLOCK_MONOTONIC, linux/time.h
	var ts syscall.Timespec
	_, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// CRLF returns a writer that turns each "\n" into "\r\n" (a "\n" already
// preceded by "\r" is left alone), as a serial terminal without a line
// discipline needs. Each Write is passed on as one Write.
func CRLF(w io.Writer) io.Writer { return &crlfWriter{w: w} }

type crlfWriter struct {
	mu     sync.Mutex
	w      io.Writer
	lastCR bool
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]byte, 0, len(p)+8)
	for _, b := range p {
		if b == '\n' && !c.lastCR {
			out = append(out, '\r')
		}
		out = append(out, b)
		c.lastCR = b == '\r'
	}
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
