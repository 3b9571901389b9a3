package ftmirror

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/simguest"
	"github.com/doppel-ft/doppel/ftmirror/wire"
)

// fakeClock is a Clock that moves only when told to (Advance), so timing
// paths are tested without depending on wall time.
type fakeClock struct {
	mu      sync.Mutex
	t       time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(100, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.t
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.t.Add(d), ch})
	return ch
}

// Advance moves the clock and fires every waiter that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.t) {
			w.ch <- c.t
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// waiting returns how many After channels are pending.
func (c *fakeClock) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// waitReading waits until s's reader is in a read of the link. Silence
// counts only from then (liveness.silentFor): a test that moves the clock
// before a loaded machine has run the reader would count less silence
// than it stepped, and wait in vain for the peer to be declared lost.
func waitReading(t *testing.T, s *session) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.live.readSince.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the reader never started a read")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// sessionPair runs the handshake over a pipe with both ends on clock.
func sessionPair(t *testing.T, clock Clock, hb Heartbeat) (prim, sec *session) {
	pc, sc := net.Pipe()
	type res struct {
		s   *session
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, _, err := handshake(sc, testPSK, wire.Hello{Role: wire.RoleSecondary, Pages: 1}, clock, hb)
		ch <- res{s, err}
	}()
	prim, _, err := handshake(pc, testPSK, wire.Hello{Role: wire.RolePrimary, Pages: 1}, clock, hb)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return prim, r.s
}

// frames reads s's frames until the session ends and counts them by type.
func frames(s *session, mu *sync.Mutex, count map[wire.Type]int) {
	for {
		f, err := s.rd.Next()
		if err != nil {
			s.fail(linkError("peer", err))
			return
		}
		s.live.heard()
		mu.Lock()
		count[f.Type]++
		mu.Unlock()
	}
}

// TestHeartbeatTimingOnFakeClock drives the heartbeat path by the clock
// alone: an idle side sends a HEARTBEAT each half interval of clock time,
// and a side whose peer goes silent fails exactly past the deadline.
func TestHeartbeatTimingOnFakeClock(t *testing.T) {
	clock := newFakeClock()
	hb := Heartbeat{Interval: 10 * time.Millisecond, Misses: 4}
	prim, sec := sessionPair(t, clock, hb)
	var mu sync.Mutex
	got := map[wire.Type]int{}
	go frames(sec, &mu, got) // the secondary reads, but sends nothing
	go frames(prim, &mu, map[wire.Type]int{})
	waitReading(t, prim)
	go prim.heartbeats(clock)

	step := func(d time.Duration) {
		// Let the heartbeat goroutine reach its wait, then move the clock.
		for deadline := time.Now().Add(5 * time.Second); clock.waiting() == 0; {
			if time.Now().After(deadline) {
				t.Fatal("heartbeat goroutine never waited on the clock")
			}
			time.Sleep(100 * time.Microsecond)
		}
		clock.Advance(d)
	}
	heartbeats := func() int {
		mu.Lock()
		defer mu.Unlock()
		return got[wire.THeartbeat]
	}
	for i := 1; i <= 3; i++ {
		step(hb.Interval / 2)
		// Received, and the writer has noted when it sent it (after
		// the write returned): only then is the next half interval due.
		for deadline := time.Now().Add(5 * time.Second); heartbeats() < i || prim.lastSent.Load() != clock.Now().UnixNano(); {
			if time.Now().After(deadline) {
				t.Fatalf("%d heartbeats after %d half intervals of clock time", heartbeats(), i)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	// The secondary has said nothing for 3 half intervals (15 ms) of
	// clock time while the primary was reading: not yet lost (40 ms).
	if err := prim.failed(); err != nil {
		t.Fatalf("failed before the deadline: %v", err)
	}
	for i := 0; i < 6; i++ { // 45 ms of silence in all
		step(hb.Interval / 2)
	}
	select {
	case <-prim.done:
	case <-time.After(5 * time.Second):
		t.Fatal("peer silent past the deadline of clock time was not declared lost")
	}
	if !errors.Is(prim.err, ErrPeerLost) {
		t.Fatalf("session ended with %v, want ErrPeerLost", prim.err)
	}
	sec.fail(io.EOF)
}

// TestRunAloneOnFakeClock checks that a lone primary's checkpoints follow
// the engine's clock, not wall time: none while the clock stands still, one
// per epoch of clock time.
func TestRunAloneOnFakeClock(t *testing.T) {
	clock := newFakeClock()
	r := newRig(t, 64, func(c *Config) { c.Clock = clock })
	defer r.stopGuest()
	r.p.Continue(0, 0, true)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { r.p.RunAlone(stop); close(done) }()
	waitFor := func(what string, cond func() bool) {
		for deadline := time.Now().Add(5 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	waitFor("RunAlone to wait on the clock", func() bool { return clock.waiting() > 0 })
	time.Sleep(50 * time.Millisecond) // ten epochs of wall time
	if e := r.p.Epoch(); e != 0 {
		t.Fatalf("epoch %d with the clock standing still", e)
	}
	for i := 1; i <= 5; i++ {
		clock.Advance(r.cfg.Epoch)
		waitFor("a checkpoint", func() bool { return r.p.Epoch() == uint64(i) && clock.waiting() > 0 })
	}
	close(stop)
	<-done
}

// TestDeadlineWhileSendStuck: a link whose send side is stuck (a partition
// fills the socket buffer; here the peer never reads) must not stop the
// failure detector: heartbeats that cannot be queued are skipped and the
// silent peer is declared lost at the deadline.
func TestDeadlineWhileSendStuck(t *testing.T) {
	clock := newFakeClock()
	hb := Heartbeat{Interval: 10 * time.Millisecond, Misses: 20}
	prim, sec := sessionPair(t, clock, hb) // nobody reads sec's end
	defer sec.fail(io.EOF)
	go frames(prim, &sync.Mutex{}, map[wire.Type]int{})
	waitReading(t, prim)
	go prim.heartbeats(clock)
	// Advance in half intervals until the session ends; it must end past
	// the deadline, and the heartbeat goroutine must keep waiting on the
	// clock until then (not be blocked queueing a heartbeat).
	for steps := 0; ; steps++ {
		for deadline := time.Now().Add(5 * time.Second); clock.waiting() == 0; {
			select {
			case <-prim.done:
				if steps <= 2*hb.Misses {
					t.Fatalf("session ended after %d half intervals, before the deadline: %v", steps, prim.err)
				}
				if !errors.Is(prim.err, ErrPeerLost) {
					t.Fatalf("session ended with %v, want ErrPeerLost", prim.err)
				}
				return
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %d half intervals the heartbeat goroutine no longer waits on the clock (blocked sending?)", steps)
			}
			time.Sleep(100 * time.Microsecond)
		}
		if steps > 2*hb.Misses+4 {
			t.Fatalf("silent peer not declared lost after %d half intervals", steps)
		}
		clock.Advance(hb.Interval / 2)
	}
}

// TestOwnStallIsNotSilence: a side whose own process was not scheduled
// (here: its heartbeat goroutine wakes 100 ms of clock time late, past the
// 40 ms deadline) must not declare its peer lost for that, since the peer's
// bytes may be waiting unread; once it runs on time again, a peer that
// really is silent is declared lost after a deadline of that time. Before,
// the late wake alone ended the session (a false failover on a loaded
// host: "silent for 528ms").
func TestOwnStallIsNotSilence(t *testing.T) {
	clock := newFakeClock()
	hb := Heartbeat{Interval: 10 * time.Millisecond, Misses: 4}
	prim, sec := sessionPair(t, clock, hb)
	defer sec.fail(io.EOF)
	var mu sync.Mutex
	got := map[wire.Type]int{}
	go frames(prim, &mu, got)
	go frames(sec, &sync.Mutex{}, map[wire.Type]int{})
	go prim.heartbeats(clock)
	waitClock := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); clock.waiting() == 0; {
			select {
			case <-prim.done:
				t.Fatalf("session ended: %v", prim.err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("heartbeat goroutine never waited on the clock")
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	waitClock()
	clock.Advance(100 * time.Millisecond) // this side was not scheduled
	waitClock()                           // it looked, and did not give up
	// The peer's bytes that were waiting are read now.
	if err := sec.send(wire.THeartbeat, 0, wire.AppendU64(nil, 1)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		mu.Lock()
		n := got[wire.THeartbeat]
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("peer's heartbeat never read")
		}
		time.Sleep(100 * time.Microsecond)
	}
	waitReading(t, prim)
	// From here the peer is silent and this side runs on time: lost after
	// the deadline (8 half intervals), not before. After each step the
	// heartbeat goroutine has either ended the session or waits again.
	waitClock()
	for steps := 1; steps <= 2*hb.Misses+2; steps++ {
		clock.Advance(hb.Interval / 2)
		for deadline := time.Now().Add(5 * time.Second); clock.waiting() == 0; {
			select {
			case <-prim.done:
				if steps <= 2*hb.Misses {
					t.Fatalf("declared lost after %d half intervals, before the deadline: %v", steps, prim.err)
				}
				if !errors.Is(prim.err, ErrPeerLost) {
					t.Fatalf("session ended with %v, want ErrPeerLost", prim.err)
				}
				return
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("heartbeat goroutine neither waited on the clock nor ended the session")
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	t.Fatalf("silent peer not declared lost after %d on-time half intervals", 2*hb.Misses+2)
}

// TestPrimaryPatience: a primary drops a silent secondary only after twice
// the heartbeat deadline of clock time (dropping it closes the link, which
// a secondary that was merely not scheduled would take for the primary's
// death). Here the secondary reads everything and says nothing.
func TestPrimaryPatience(t *testing.T) {
	clock := newFakeClock()
	params := simguest.Params{Pages: 64, Seed: 1}
	g := simguest.New(params)
	hb := Heartbeat{Interval: 10 * time.Millisecond, Misses: 4}
	p := NewPrimary(Config{PSK: testPSK, Generation: 1, Epoch: time.Hour, Heartbeat: hb, Clock: clock},
		g, g, g, worldSink{&world{}, "primary"})
	pc, sc := net.Pipe()
	defer sc.Close()
	served := make(chan error, 1)
	go func() { served <- p.Serve(pc) }()
	sec, _, err := handshake(sc, testPSK, wire.Hello{Role: wire.RoleSecondary, Pages: 64}, clock, hb)
	if err != nil {
		t.Fatal(err)
	}
	go frames(sec, &sync.Mutex{}, map[wire.Type]int{})
	half := hb.Interval / 2
	// Silence counts from when the primary's reader began to wait, which
	// under -race may be a few steps in: so the upper bound is loose.
	patient := int(2 * hb.Deadline() / half) // half intervals: twice the deadline
	for steps := 1; steps <= 2*patient; steps++ {
		for deadline := time.Now().Add(5 * time.Second); !clock.waitingAt(clock.Now().Add(half)); {
			select {
			case err := <-served:
				if steps <= patient {
					t.Fatalf("primary dropped its secondary after %d half intervals, want more than %d: %v",
						steps-1, patient, err)
				}
				if !errors.Is(err, ErrPeerLost) {
					t.Fatalf("primary ended with %v, want ErrPeerLost", err)
				}
				return
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("primary's heartbeat goroutine does not wait on the clock")
			}
			time.Sleep(100 * time.Microsecond)
		}
		clock.Advance(half)
	}
	t.Fatalf("silent secondary not dropped after %d half intervals", 2*patient)
}

// TestRunAloneReleaseDirect: a promoted primary with no secondary yet
// releases the guest's output as it is emitted, with the engine's clock
// standing still (no epoch ends); a primary that has never had a
// secondary holds it, epochs or not.
func TestRunAloneReleaseDirect(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			clock := newFakeClock()
			r := newRig(t, 64, func(c *Config) { c.Clock = clock })
			defer r.stopGuest()
			r.p.Continue(0, 0, direct)
			stop, done := make(chan struct{}), make(chan struct{})
			go func() { r.p.RunAlone(stop); close(done) }()
			released := func() int {
				r.w.mu.Lock()
				defer r.w.mu.Unlock()
				return len(r.w.data)
			}
			// The simulated guest emits output as it runs.
			deadline := time.Now().Add(5 * time.Second)
			if !direct {
				deadline = time.Now().Add(50 * time.Millisecond)
			}
			for released() < 100 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if direct && released() < 100 {
				t.Fatalf("%d bytes released in 5 s with the clock standing still, want output released as emitted", released())
			}
			if !direct {
				clock.Advance(3 * r.cfg.Epoch)
				time.Sleep(20 * time.Millisecond)
				if n := released(); n != 0 {
					t.Fatalf("a primary that never had a secondary released %d bytes", n)
				}
			}
			if e := r.p.Epoch(); direct && e != 0 {
				t.Errorf("epoch %d with the clock standing still", e)
			}
			close(stop)
			<-done
			r.w.mu.Lock()
			errs := r.w.errs
			r.w.mu.Unlock()
			if len(errs) > 0 {
				t.Errorf("releases out of order: %v", errs)
			}
		})
	}
}
