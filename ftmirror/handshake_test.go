package ftmirror

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestHandshakeBounded connects each side to a peer that reads but never
// says HELLO: Serve must give up within Heartbeat.Handshake with
// ErrHandshake (not ErrPeerLost, which would let a secondary promote at
// once), and the primary must then serve a real secondary.
func TestHandshakeBounded(t *testing.T) {
	short := func(c *Config) { c.Heartbeat = Heartbeat{Interval: 10 * time.Millisecond, Misses: 5} }
	for _, side := range []string{"primary", "secondary"} {
		t.Run(side, func(t *testing.T) {
			r := newRig(t, 64, short)
			bound := r.cfg.Heartbeat.Handshake()
			mine, mute := net.Pipe()
			go io.Copy(io.Discard, mute) // reads the HELLO, answers nothing
			defer mute.Close()
			serve := r.p.Serve
			if side == "secondary" {
				serve = r.s.Serve
			}
			start := time.Now()
			errc := make(chan error, 1)
			go func() { errc <- serve(mine) }()
			select {
			case err := <-errc:
				if !errors.Is(err, ErrHandshake) || errors.Is(err, ErrPeerLost) {
					t.Fatalf("Serve with a mute peer: %v, want ErrHandshake and not ErrPeerLost", err)
				}
				if took := time.Since(start); took < bound {
					t.Errorf("gave up after %v, before the bound %v", took, bound)
				}
			case <-time.After(bound + 20*time.Second):
				t.Fatalf("Serve still waiting for a HELLO %v after the bound %v", time.Since(start), bound)
			}
			if side == "secondary" {
				return
			}
			// The primary is free for the secondary that comes next.
			pc, sc := net.Pipe()
			perr, _ := r.serve(pc, sc)
			r.waitEpoch(3)
			r.stopGuest()
			pc.Close()
			<-perr
		})
	}
}
