package ftmirror

import (
	"net"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

// BenchmarkCheckpointPipeline measures what one protected checkpoint costs
// the engine from pause to commit, both sides in this process over an
// in-memory link: 500 page writes (100 checkpoints a second at 50,000
// dirty pages/s) in a 32 MiB guest, captured, encoded, sealed, sent,
// checked and applied under the undo log, on a fake clock so that only
// the work is timed. On a loaded host every microsecond of it is also
// time spent waiting for a CPU, so ns/op and allocs/op are the figures to
// watch for a regression of release latency (allocations per epoch drive
// the collector).
func BenchmarkCheckpointPipeline(b *testing.B) {
	clock := newFakeClock()
	params := simguest.Params{Pages: 8192, Seed: 5, Pattern: simguest.Uniform}
	pg, sg := simguest.New(params), simguest.NewBlank(params)
	cfg := Config{PSK: testPSK, Generation: 1, Epoch: 10 * time.Millisecond, GroupBytes: 512 << 10,
		Heartbeat: Heartbeat{Interval: time.Second, Misses: 1000}, Clock: clock}
	p := NewPrimary(cfg, pg, pg, pg, worldSink{&world{}, "primary"})
	pg.Emit = p.Output
	s := NewSecondary(cfg, sg)
	pc, sc := net.Pipe()
	defer pc.Close()
	defer sc.Close()
	go p.Serve(pc)
	go s.Serve(sc)
	waitFor := func(what string, cond func() bool) {
		for deadline := time.Now().Add(30 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				b.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	waitFor("the sync", func() bool { _, ok := s.Committed(); return ok })
	next := clock.Now().Add(cfg.Epoch)
	epoch := p.Epoch()
	b.ReportAllocs()
	b.SetBytes(500 * PageSize) // raw dirty bytes per checkpoint
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		waitFor("the checkpoint wait", func() bool { return clock.waitingAt(next) })
		pg.Step(500)
		b.StartTimer()
		clock.Advance(next.Sub(clock.Now()))
		next = next.Add(cfg.Epoch)
		epoch++
		waitFor("the commit", func() bool { c, _ := s.Committed(); return c >= epoch })
	}
}
