package uart

import (
	"io"
	"sync"
)

// PrefixWriter writes each line it is given to w with a prefix in front,
// so a guest's console can share doppel's: "guest: hello". A line is sent
// whole when its newline arrives (or when it grows past 256 bytes).
type PrefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	line   []byte
}

// NewPrefixWriter returns a PrefixWriter.
func NewPrefixWriter(w io.Writer, prefix string) *PrefixWriter {
	return &PrefixWriter{w: w, prefix: prefix}
}

// Write implements io.Writer.
func (p *PrefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range b {
		if c == '\r' {
			continue
		}
		p.line = append(p.line, c)
		if c == '\n' || len(p.line) >= 256 {
			if err := p.flush(); err != nil {
				return 0, err
			}
		}
	}
	return len(b), nil
}

func (p *PrefixWriter) flush() error {
	if len(p.line) == 0 {
		return nil
	}
	if p.line[len(p.line)-1] != '\n' {
		p.line = append(p.line, '\n')
	}
	out := append([]byte(p.prefix), p.line...)
	p.line = p.line[:0]
	_, err := p.w.Write(out)
	return err
}

// Flush sends a partial line.
func (p *PrefixWriter) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flush()
}
