package main

import (
	"net/netip"
	"testing"

	"github.com/doppel-ft/doppel/ft"
	"github.com/doppel-ft/doppel/ft/vmguest"
)

func TestAutoRole(t *testing.T) {
	for _, c := range []struct {
		me, peer string
		want     ft.Role
	}{
		{"10.9.0.1", "10.9.0.2", ft.RolePrimary},
		{"10.9.0.2", "10.9.0.1", ft.RoleSecondary},
		{"10.9.0.10", "10.9.0.9", ft.RoleSecondary}, // numeric, not textual order
		{"192.168.1.1", "10.0.0.1", ft.RoleSecondary},
	} {
		if got := autoRole(netip.MustParseAddr(c.me), netip.MustParseAddr(c.peer)); got != c.want {
			t.Errorf("autoRole(%s, %s) = %s, want %s", c.me, c.peer, got, c.want)
		}
	}
}

// lines records what reaches the console.
type lines struct{ b []byte }

func (l *lines) Write(p []byte) (int, error) { l.b = append(l.b, p...); return len(p), nil }

// TestConsoleSinkDead: a killed node releases nothing more, and says so.
func TestConsoleSinkDead(t *testing.T) {
	var out lines
	s := &consoleSink{split: vmguest.NewSplitter(&out, noNIC{}, 0, 0)}
	rec := vmguest.AppendSerial(nil, []byte("tick 1\n"))
	if err := s.Release(0, rec); err != nil {
		t.Fatal(err)
	}
	s.dead.Store(true)
	if err := s.Release(uint64(len(rec)), vmguest.AppendSerial(nil, []byte("tick 2\n"))); err == nil {
		t.Fatal("a dead node released output")
	}
	if string(out.b) != "tick 1\n" {
		t.Fatalf("console got %q", out.b)
	}
}
