package ftmirror

import (
	"net"
	"sync"
	"testing"
	"time"
)

// A promoted secondary takes its primary's generation plus one, so a
// second failover carries generation 3 (it was always 2).
func TestTakeoverGeneration(t *testing.T) {
	for _, gen := range []uint64{1, 2, 7} {
		r := newRig(t, 64, func(c *Config) { c.Generation = gen })
		if tk := takeoverAfterEpochs(r, 3); tk.Generation != gen+1 {
			t.Errorf("primary of generation %d: takeover as generation %d, want %d", gen, tk.Generation, gen+1)
		}
	}
}

// A primary built before it knew its generation (a secondary's, ahead of
// its takeover) presents the one set later, and its secondary takes over
// as that plus one.
func TestSetGeneration(t *testing.T) {
	r := newRig(t, 64, nil)
	r.p.SetGeneration(5)
	if tk := takeoverAfterEpochs(r, 3); tk.Generation != 6 {
		t.Errorf("primary set to generation 5: takeover as generation %d, want 6", tk.Generation)
	}
}

// The secondary learns how far the primary released output when the
// primary releases it (a RELEASE frame), not at the next BEGIN, which went
// out before the ACK that released it. The primary is held at its
// mid-epoch point (so no BEGIN can come) until the secondary knows; then
// it dies, and the promoted secondary replays nothing the world has seen.
// Before the RELEASE frame, the takeover replayed the whole previous epoch
// (after a resync: every epoch held during it).
func TestSecondaryLearnsReleaseAtOnce(t *testing.T) {
	var (
		mu      sync.Mutex
		armed   bool
		r       *rig
		pc      net.Conn
		learned = make(chan uint64, 1)
		failed  = make(chan string, 1)
	)
	r = newRig(t, 256, func(c *Config) {
		c.Epoch = 20 * time.Millisecond
		inner := c.Hook
		c.Hook = func(pt Point, e uint64) {
			inner(pt, e)
			mu.Lock()
			hit := armed && pt == PointMidEpoch
			if hit {
				armed = false
			}
			mu.Unlock()
			if !hit {
				return
			}
			// Wait for the ACK of epoch e-1 to be released, then for the
			// secondary to hear of it, with the primary's loop held here.
			deadline := time.Now().Add(10 * time.Second)
			for {
				r.mu.Lock()
				rel := r.released
				r.mu.Unlock()
				if rel >= e-1 {
					break
				}
				if time.Now().After(deadline) {
					failed <- "epoch's output never released"
					return
				}
				time.Sleep(time.Millisecond)
			}
			want := r.p.out.releasedThrough()
			for {
				r.s.mu.Lock()
				start := r.s.outLog.start
				r.s.mu.Unlock()
				if start >= want {
					pc.Close() // the primary dies here, before it can release more
					learned <- want
					return
				}
				if time.Now().After(deadline) {
					failed <- "the secondary's log still starts before the released offset"
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	})
	pc0, sc := net.Pipe()
	pc = pc0
	perr, serr := r.serve(pc, sc)
	r.waitEpoch(10)
	r.waitOutput()
	mu.Lock()
	armed = true
	mu.Unlock()
	var rel uint64
	select {
	case rel = <-learned:
	case msg := <-failed:
		t.Fatal(msg)
	}
	r.stopGuest()
	<-perr
	<-serr
	r.w.mu.Lock()
	world := uint64(len(r.w.data))
	r.w.mu.Unlock()
	tk := r.takeover()
	if tk.OutOffset != rel || world != rel {
		t.Fatalf("takeover replays from %d; the primary had released through %d, the world holds %d", tk.OutOffset, rel, world)
	}
}
