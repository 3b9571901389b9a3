package main

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/doppel-ft/doppel/ftmirror/wire"
)

// proxy sits between the secondary and the primary to inject link faults:
// "corrupt" flips a payload bit of the Nth GROUP frame, "forge" moves it to
// the next epoch instead (a header field, as an attacker without the key
// would rewrite it), "replay" sends the previous frame again instead, "partition" stops all traffic in
// both directions (connections stay open) when cut() is called.
type proxy struct {
	target string
	fault  string
	nth    int
	cutAt  atomic.Bool
	mu     sync.Mutex
	done   bool
}

func (p *proxy) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		go p.pipe(c, u, false) // secondary -> primary
		go p.pipe(u, c, true)  // primary -> secondary
	}
}

func (p *proxy) cut() { p.cutAt.Store(true) }

func (p *proxy) pipe(src, dst net.Conn, fromPrimary bool) {
	defer dst.Close()
	var prev, f []byte
	groups := 0
	hdr := make([]byte, wire.HeaderSize)
	for {
		if _, err := io.ReadFull(src, hdr); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(hdr[4:]))
		if n > wire.MaxPayload {
			return
		}
		if cap(f) < wire.Overhead+n {
			f = make([]byte, wire.Overhead+n)
		}
		f = f[:wire.Overhead+n]
		copy(f, hdr)
		if _, err := io.ReadFull(src, f[wire.HeaderSize:]); err != nil {
			return
		}
		if p.cutAt.Load() {
			select {} // partitioned: swallow everything, never close
		}
		out := f
		if fromPrimary && wire.Type(f[3]) == wire.TGroup && binary.LittleEndian.Uint64(f[16:]) >= 3 {
			groups++
			p.mu.Lock()
			hit := !p.done && groups == p.nth
			if hit {
				p.done = true
			}
			p.mu.Unlock()
			if hit {
				out = append([]byte(nil), f...)
				switch p.fault {
				case "corrupt":
					out[wire.HeaderSize+9] ^= 0x40
				case "forge":
					binary.LittleEndian.PutUint64(out[16:], binary.LittleEndian.Uint64(out[16:])+1)
				case "replay":
					out = append([]byte(nil), prev...)
				}
			}
		}
		if _, err := dst.Write(out); err != nil {
			return
		}
		prev = append(prev[:0], f...)
	}
}
