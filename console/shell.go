package console

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Control bytes the line editor understands (ASCII).
const (
	ctrlC     = 0x03 // cancel the line
	backspace = 0x08 // erase one character (^H)
	bell      = 0x07 // line full
	lf        = '\n' // enter
	cr        = '\r' // enter; a following LF is part of the same enter
	ctrlU     = 0x15 // erase the line
	esc       = 0x1b // starts an escape sequence: up/down walk the history, others are ignored
	del       = 0x7f // erase one character (what most terminals send)
)

// MaxLine is the longest command line the shell accepts.
const MaxLine = 256

// ErrExit, returned by a command, ends Shell.Run without error.
var ErrExit = errors.New("console: exit")

// Command is one shell command.
type Command struct {
	Name string
	Args string // argument synopsis for help, e.g. "[n]"
	Help string // one line
	Run  func(w io.Writer, args []string) error
}

// Shell is an interactive command interpreter over a raw byte stream.
type Shell struct {
	In       io.Reader
	Out      io.Writer
	Prompt   string    // printed before each line; "doppel> " when empty
	Echo     bool      // echo typed bytes (a raw serial line needs it)
	Commands []Command // "help" is built in
}

// Run reads and runs command lines until In ends (nil) or a command returns
// ErrExit (nil). A failing command prints its error and the shell goes on;
// only a failing read ends it with an error.
func (s *Shell) Run() error {
	ed := lineEditor{echo: s.Echo, out: s.Out}
	s.prompt()
	buf := make([]byte, 64)
	for {
		n, err := s.In.Read(buf)
		for _, b := range buf[:n] {
			line, entered := ed.feed(b)
			if !entered {
				continue
			}
			if line != "" {
				if s.run(line) {
					return nil
				}
			}
			s.prompt()
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("console: shell: read: %w", err)
		}
	}
}

func (s *Shell) prompt() {
	p := s.Prompt
	if p == "" {
		p = "doppel> "
	}
	io.WriteString(s.Out, p)
}

// run runs one command line and reports whether the shell should exit.
func (s *Shell) run(line string) (exit bool) {
	args := strings.Fields(line)
	if len(args) == 0 {
		return false
	}
	if args[0] == "help" {
		s.help()
		return false
	}
	for _, c := range s.Commands {
		if c.Name != args[0] {
			continue
		}
		err := c.Run(s.Out, args[1:])
		if errors.Is(err, ErrExit) {
			return true
		}
		if err != nil {
			fmt.Fprintf(s.Out, "%s: %v\n", c.Name, err)
		}
		return false
	}
	fmt.Fprintf(s.Out, "unknown command %q: try help\n", args[0])
	return false
}

// help lists "help" and then the commands in table order.
func (s *Shell) help() {
	cmds := append([]Command{{Name: "help", Help: "list the commands"}}, s.Commands...)
	for _, c := range cmds {
		fmt.Fprintf(s.Out, "  %-16s %s\n", strings.TrimSpace(c.Name+" "+c.Args), c.Help)
	}
}

// lineEditor turns raw terminal bytes into command lines.
type lineEditor struct {
	echo    bool
	out     io.Writer
	line    []byte
	lastCR  bool     // the previous byte was CR: swallow one LF
	escape  escState // inside an escape sequence
	history []string // entered lines, oldest first, at most historySize
	recall  int      // index into history while walking it; len(history) when not
}

// historySize is how many entered lines the up arrow can recall.
const historySize = 32

type escState int

const (
	escNone  escState = iota
	escStart          // after ESC
	escCSI            // after ESC [ or ESC O: until a final byte
)

// feed takes one byte and returns a completed line when it was an enter.
func (e *lineEditor) feed(b byte) (line string, entered bool) {
	afterCR := e.lastCR
	e.lastCR = b == cr
	switch e.escape {
	case escStart:
		e.escape = escNone
		if b == '[' || b == 'O' {
			e.escape = escCSI
		}
		return "", false
	case escCSI:
		if b >= 0x40 && b <= 0x7e { // final byte (ECMA-48 section 5.4)
			e.escape = escNone
			e.walkHistory(b)
		}
		return "", false
	}
	switch {
	case b == cr || (b == lf && !afterCR):
		line = string(e.line)
		e.line = e.line[:0]
		e.write("\n")
		e.remember(line)
		return line, true
	case b == lf: // the LF of a CR LF pair
	case b == backspace || b == del:
		if len(e.line) > 0 {
			e.line = e.line[:len(e.line)-1]
			e.write("\b \b")
		}
	case b == ctrlU:
		e.write(strings.Repeat("\b \b", len(e.line)))
		e.line = e.line[:0]
	case b == ctrlC:
		e.line = e.line[:0]
		e.write("^C\n")
		return "", true
	case b == esc:
		e.escape = escStart
	case b >= 0x20 && b < 0x7f:
		if len(e.line) >= MaxLine {
			e.write(string(rune(bell)))
			break
		}
		e.line = append(e.line, b)
		e.write(string(rune(b)))
	}
	return "", false
}

// remember adds a non-blank line to the history, unless it repeats the last.
func (e *lineEditor) remember(line string) {
	if strings.TrimSpace(line) != "" && (len(e.history) == 0 || e.history[len(e.history)-1] != line) {
		e.history = append(e.history, line)
		if len(e.history) > historySize {
			e.history = e.history[1:]
		}
	}
	e.recall = len(e.history)
}

// walkHistory handles the final byte of a CSI sequence: A (cursor up)
// recalls the previous line, B (cursor down) the next one or an empty line.
func (e *lineEditor) walkHistory(final byte) {
	switch {
	case final == 'A' && e.recall > 0:
		e.recall--
	case final == 'B' && e.recall < len(e.history):
		e.recall++
	default:
		return
	}
	e.write(strings.Repeat("\b \b", len(e.line)))
	e.line = e.line[:0]
	if e.recall < len(e.history) {
		e.line = append(e.line, e.history[e.recall]...)
	}
	e.write(string(e.line))
}

func (e *lineEditor) write(s string) {
	if e.echo {
		io.WriteString(e.out, s)
	}
}
