package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/vmm/pc"
)

// TestConsoleMux: bytes go to the guest while it has the console, Ctrl-A c
// switches to the shell and back, Ctrl-A Ctrl-A is a literal Ctrl-A.
func TestConsoleMux(t *testing.T) {
	pr, pw := io.Pipe()
	var notices bytes.Buffer
	c := newConsoleMux(pr, &notices)
	var got []byte
	gotc := make(chan struct{}, 16)
	in := &pc.Input{}
	c.setGuest(in)
	// pc.Input forwards only once a guest registered a receiver; stand
	// in for the UART.
	in.SetReceiver(func(b []byte) { got = append(got, b...); gotc <- struct{}{} })
	pw.Write([]byte("ls\r"))
	<-gotc
	pw.Write([]byte{0x01, 'c'})
	pw.Write([]byte("help\r"))
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	if string(buf[:n]) != "help\r" {
		t.Errorf("shell read %q", buf[:n])
	}
	pw.Write([]byte{0x01, 'c', 0x01, 0x01})
	<-gotc
	if string(got) != "ls\r\x01" {
		t.Errorf("guest got %q", got)
	}
	if !strings.Contains(notices.String(), "console to doppel's shell") {
		t.Errorf("notices %q", notices.String())
	}
	// Once the guest is gone everything goes to the shell.
	c.setGuest(nil)
	pw.Write([]byte("x"))
	done := make(chan string)
	go func() { n, _ := c.Read(buf); done <- string(buf[:n]) }()
	select {
	case s := <-done:
		if s != "x" {
			t.Errorf("shell read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shell got nothing after the guest stopped")
	}
	pw.Close()
}
