// Package console is doppel's operator interface on the serial line: a log
// of timestamped lines ("[   12.345678] subsystem: message", seconds since
// boot) kept in an in-memory ring, and an interactive shell that reads raw
// bytes (the boot layer has no line discipline: the shell echoes, edits and
// ends lines itself) and runs commands from a table.
//
// On bare metal os.Stdin and os.Stdout are COM1 (boot/CONTRACT.md,
// "Console"). The boot layer turns each "\n" written to fd 1 or 2 into
// "\r\n" itself; CRLF does the same for a console that does not.
// Everything takes an io.Reader or io.Writer, so the shell and its commands
// are tested with typed input against expected output.
package console
