package vmguest

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// LineBuffer sits between the guest's UART and Output: it hands on the
// guest's serial bytes in whole lines (or MaxLine bytes when a line runs
// longer). Why: the engine releases output per epoch, so without it a
// line the guest was printing at a checkpoint would leave the pair half on
// the old primary's console and half on the new one's; with it every
// release ends at a line boundary. The partial line is machine state that
// travels in each checkpoint (LineBuffer is a devices.Snapshotter added to
// the VM like any device), so a promoted secondary completes it exactly
// as the primary would have. The price: a prompt without a newline waits
// for one (or for MaxLine bytes).
type LineBuffer struct {
	mu      sync.Mutex
	w       io.Writer
	pending []byte
}

// MaxLine bounds the partial line held.
const MaxLine = 512

// NewLineBuffer hands whole lines to w (the VM's Output).
func NewLineBuffer(w io.Writer) *LineBuffer { return &LineBuffer{w: w} }

// Write implements io.Writer for the UART.
func (l *LineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, p...)
	n := 0
	if i := bytes.LastIndexByte(l.pending, '\n'); i >= 0 {
		n = i + 1
	}
	if len(l.pending)-n >= MaxLine {
		n = len(l.pending)
	}
	if n == 0 {
		return len(p), nil
	}
	if _, err := l.w.Write(l.pending[:n]); err != nil {
		return 0, err
	}
	l.pending = append(l.pending[:0], l.pending[n:]...)
	return len(p), nil
}

const (
	lineMagic   = "LINE"
	lineVersion = 1
)

// Save implements devices.Snapshotter: the partial line.
func (l *LineBuffer) Save() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := devices.NewEncoder(lineMagic, lineVersion)
	e.Bytes(l.pending)
	return e.Finish(), nil
}

// Restore implements devices.Snapshotter.
func (l *LineBuffer) Restore(b []byte) error {
	d := devices.NewDecoder(b, lineMagic, lineVersion)
	p := d.Bytes(MaxLine)
	if err := d.Finish(); err != nil {
		return fmt.Errorf("vmguest: line buffer: %w", err)
	}
	l.mu.Lock()
	l.pending = append(l.pending[:0], p...)
	l.mu.Unlock()
	return nil
}
