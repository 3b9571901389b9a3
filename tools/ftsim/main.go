// Command ftsim runs the doppel fault-tolerance engine (ftmirror) as two
// OS processes over loopback TCP with a synthetic guest, measures it, kills
// the primary, and verifies the takeover:
//
//	ftsim -mem 1g -dirty-rate 12000 -epoch 25ms -duration 20s
//	ftsim -mem 64m -kill-primary-after mid-group:6 -group 16k
//
// The parent process is the orchestrator and the outside world: it measures
// raw loopback TCP between two processes, starts a primary and a secondary
// (the same binary with -role), receives the released guest output, kills
// the primary (at -kill-primary-after: a duration, or a protocol point such
// as mid-epoch, mid-group, between-groups, before-end, after-end, acked,
// mid-release, released, paused, begin, sync-round, blackout, resync, with
// an optional ":N" epoch), and then checks that the promoted secondary's
// memory equals the primary's at the committed epoch (by replaying the
// deterministic guest) and that the world saw the output stream exactly
// once with no gap.
//
// # Measured (2026-11-29, this 2-core shared VM, medians of 5 runs)
//
//	for i in 1 2 3 4 5; do ftsim -mem 1g -dirty-rate 12000 -epoch 25ms -duration 10s -json; done
//
// (defaults then: uniform pattern, forwarding twice per epoch, 512 KiB
// groups, 64 MiB shadow cache, heartbeat 10 ms x 20). Every run ended
// "verify: ok".
//
//	initial sync           1.05 s, 1022 MB/s; raw loopback TCP 1280 MB/s;
//	                       ratio 0.76 (runs 0.55 0.51 0.83 0.76 0.83)
//	checkpoints            357 in 10 s (25 ms epochs)
//	pause                  p50 0.035 ms, p99 0.28 ms, max 0.74 ms
//	wire per checkpoint    1.17 MB against 1.23 MB of raw dirty pages (a
//	                       64 MiB shadow cache rarely holds a page of a 1 GiB
//	                       guest dirtied uniformly; 17% with a 64 MiB guest,
//	                       59% with -pattern hot)
//	output release latency p50 14.1 ms, p99 28.1 ms (epoch + 3.1 ms)
//	failover               200 ms (the 200 ms heartbeat deadline + takeover)
//
// # Failover and 100 checkpoints a second (2026-12-02, issue 10)
//
// Failover now starts when the primary's socket closes (a killed process),
// not after the heartbeat deadline; the deadline (5 ms x 100 = 500 ms by
// default) only bounds the detection of a silent link. Measured while the
// machine was shared with other engineers' QEMU and Bochs runs, builds and
// benchmarks (load average 16-25 on 2 cores, so every figure here is
// dominated by scheduling delay):
//
//	ftsim -mem 64m -duration 2s -loopback-bytes 0
//	  failover  before: median 197 ms, max 205 ms (10 runs, load 5-7)
//	            after:  median 51.5 ms, max 319 ms, 11 of 20 under 50 ms
//	                    (20 runs, load 19-25); median 10.4 ms, max 501 ms,
//	                    18 of 20 under 50 ms (20 runs, load 10-12)
//	ftsim -mem 64m -duration 30s with a busy loop on top (10 runs, not 20)
//	  false failovers (a live primary lost): 0 of 5 at load ~17, 2 of 5 at
//	  load ~12 (once the secondary heard nothing for 528 ms, once the
//	  primary heard nothing from the secondary, dropped it and closed the
//	  link, so the secondary took over at once); in 3 of the 10 runs the
//	  final kill was seen as 500-660 ms of silence before the socket
//	  closed: the dying process was not scheduled to close it sooner
//	ftsim -mem 1g -dirty-rate 50000 -epoch 10ms -duration 10s -loopback-bytes 0
//	  before (load 1-6, 5 runs): pause p99 0.62 ms, release p50 7.1 ms,
//	    release p99 46.9 ms (runs 25.7 15.5 280 57.9 46.9), ack p99 10.2 ms;
//	    one run lost a live primary (silent 202 ms) and took over early
//	  before and after interleaved (load 19-24, 5 runs each): the 1 GiB
//	    sync did not finish within 10 s in 4 of 5 "before" runs (all 4
//	    "verify: mismatch" under the old name-based verifier) and gave
//	    2-433 checkpoints in the "after" runs (all "verify: ok"); no
//	    release p99 figure from these is meaningful
//
// The target of release p99 ≤ epoch + 5 ms at 100 checkpoints a second was
// not reached or measurable here. What the runs showed: the checkpoint gap
// (primary's own loop) reaches 100 ms-2 s when the processes are not
// scheduled, slow acks (> 10 ms) cluster after those gaps, and the copy
// into a newly grown snapshot buffer took 0.5-1 s inside the blackout pause
// (now grown while the guest runs).
//
// First writes to fresh memory are slow in this VM (about 5 µs a page, see
// simguest.Alloc) and it takes back memory left idle, so the simulator
// pre-touches its buffers and warms memory right before the sync.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/doppel-ft/doppel/board/bytesize"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

// profile writes a 3-second CPU profile to $FTSIM_CPUPROFILE/<name>.prof,
// if that is set (used to look at the sync and at steady state).
func profile(name string) {
	d := os.Getenv("FTSIM_CPUPROFILE")
	if d == "" {
		return
	}
	f, err := os.Create(filepath.Join(d, name+".prof"))
	if err != nil {
		return
	}
	at, _ := time.ParseDuration(os.Getenv("FTSIM_CPUPROFILE_AT"))
	go func() {
		time.Sleep(at)
		pprof.StartCPUProfile(f)
		time.Sleep(3 * time.Second)
		pprof.StopCPUProfile()
		f.Close()
	}()
}

type opts struct {
	role        string
	mem         size
	rate        float64
	pattern     string
	epoch       time.Duration
	duration    time.Duration
	killAfter   string
	seed        uint64
	json        bool
	group       size
	forward     bool
	hb          time.Duration
	hbMiss      int
	resyncPages int
	resyncAfter time.Duration
	fault       string
	faultNth    int
	partition   time.Duration
	after       time.Duration
	words       int
	loopBytes   size
	shadow      size
	zeroEvery   int
	verbose     bool
	runs        int
	// children
	dir, world, connect, name string
}

func (o *opts) params() simguest.Params {
	pat, _ := simguest.ParsePattern(o.pattern)
	return simguest.Params{Pages: int(o.mem) / simguest.PageSize, Seed: o.seed, Pattern: pat,
		Rate: o.rate, Words: o.words, ZeroEvery: o.zeroEvery}
}

// size is a byte count flag in any form bytesize accepts (256m, 256MB,
// 256MiB, 1GiB, plain bytes).
type size int64

func (s *size) String() string { return bytesize.Format(uint64(*s)) }
func (s *size) Set(v string) error {
	n, err := bytesize.Parse(v)
	if err != nil {
		return err
	}
	if n > 1<<62 {
		return fmt.Errorf("size %q is too large", v)
	}
	*s = size(n)
	return nil
}

func main() {
	o := &opts{mem: 64 << 20, group: 512 << 10}
	flag.StringVar(&o.role, "role", "", "internal: primary, secondary or rawsend")
	flag.Var(&o.mem, "mem", "guest memory size (e.g. 64m, 256MiB, 1g, 1GiB)")
	flag.Float64Var(&o.rate, "dirty-rate", 12000, "guest page writes per second")
	flag.StringVar(&o.pattern, "pattern", "uniform", "dirtying pattern: uniform, hot, sequential")
	flag.DurationVar(&o.epoch, "epoch", 25*time.Millisecond, "checkpoint interval")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "run time before the end-of-run primary kill")
	flag.StringVar(&o.killAfter, "kill-primary-after", "", "kill the primary after a duration or at a point[:epoch]")
	flag.Uint64Var(&o.seed, "seed", 1, "guest seed")
	flag.BoolVar(&o.json, "json", false, "print the report as one JSON object")
	flag.Var(&o.group, "group", "checkpoint group (GROUP frame payload) size")
	flag.BoolVar(&o.forward, "forward", true, "forward dirty pages twice per epoch while the guest runs (F6)")
	flag.DurationVar(&o.hb, "hb", 5*time.Millisecond, "heartbeat interval")
	flag.IntVar(&o.hbMiss, "hb-miss", 200, "missed heartbeats before a silent peer is declared lost (a closed or reset link is a loss at once)")
	flag.IntVar(&o.resyncPages, "resync-pages", 2048, "pages of memory carried per checkpoint while resyncing (F7)")
	flag.DurationVar(&o.resyncAfter, "resync-after", 0, "kill the first secondary at this time and start a new one, which resyncs (F7)")
	flag.StringVar(&o.fault, "fault", "", "link fault on a GROUP frame: corrupt, forge, replay")
	flag.IntVar(&o.faultNth, "fault-nth", 5, "which GROUP frame (from epoch 3 on) the -fault hits")
	flag.DurationVar(&o.partition, "partition-after", 0, "cut the link both ways at this time, both processes alive")
	flag.DurationVar(&o.after, "after", 300*time.Millisecond, "how long the promoted secondary runs the guest")
	o.shadow = 64 << 20
	flag.Var(&o.shadow, "shadow", "primary's shadow cache for deltas (0: all of memory, filled lazily)")
	o.loopBytes = -1
	flag.Var(&o.loopBytes, "loopback-bytes", "bytes for the raw loopback TCP baseline (default: max(mem, 256m); 0 skips it)")
	flag.IntVar(&o.words, "words", 16, "8-byte words the guest writes per page write")
	flag.IntVar(&o.zeroEvery, "zero-every", 0, "every Nth page starts zero (0: none)")
	flag.BoolVar(&o.verbose, "v", false, "log the children's output")
	flag.IntVar(&o.runs, "runs", 1, "run the simulation this many times and print each run's figures and the medians")
	flag.StringVar(&o.dir, "dir", "", "working directory (default: a temporary one)")
	flag.StringVar(&o.world, "world", "", "internal: world address")
	flag.StringVar(&o.connect, "connect", "", "internal: address to connect to")
	flag.StringVar(&o.name, "name", "s1", "internal: secondary name")
	flag.Parse()
	if _, err := simguest.ParsePattern(o.pattern); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if o.role != "" {
		// The big buffers live outside the Go heap; keep the collector
		// from running every few milliseconds over a small heap.
		debug.SetGCPercent(400)
	}
	var err error
	switch o.role {
	case "":
		var ok bool
		if o.runs > 1 {
			ok, err = repeat(o)
		} else {
			var rep report
			if rep, ok, err = orchestrate(o); err == nil {
				o.print(&rep)
			}
		}
		if err == nil && !ok {
			os.Exit(1)
		}
	case "primary":
		err = runPrimary(o)
	case "secondary":
		err = runSecondary(o)
	case "rawsend":
		err = runRawSend(o)
	default:
		err = fmt.Errorf("unknown role %q", o.role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftsim %s: %v\n", o.role, err)
		os.Exit(2)
	}
}
