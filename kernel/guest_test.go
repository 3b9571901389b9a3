package main

import (
	"bytes"
	"io"
	"strings"
	"sync"
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

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
	n  int // writes
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLineWriter: whole lines go out in one write, a partial line after
// the delay.
func TestLineWriter(t *testing.T) {
	out := &syncBuf{}
	w := newLineWriter(out, 20*time.Millisecond)
	for _, c := range "workload: n=1 sum=0\r\nwork" {
		w.Write([]byte(string(c)))
	}
	if got := out.String(); got != "workload: n=1 sum=0\r\n" || out.n != 1 {
		t.Errorf("after a line: %q in %d writes", got, out.n)
	}
	w.Write([]byte("load"))
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "workload: n=1 sum=0\r\nworkload" {
		if time.Now().After(deadline) {
			t.Fatalf("partial line not flushed: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
