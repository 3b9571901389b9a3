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
// an optional ":N" epoch; a point after the sync fires only once an epoch
// has been acknowledged, and nothing leaves the primary after it), and
// then checks that the promoted secondary's
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
// # Failover and 100 checkpoints a second (issue 10)
//
// scripts/ftsim-report.sh (make ftsim-report) reproduces these figures:
// ftsim -runs N prints every run and the medians, and each run line says
// how loaded the machine was (load average, cores used by other processes,
// and how many of ftsim's own threads waited for a CPU, from schedstat).
// All figures below were taken on this 2-core VM while other engineers'
// QEMU and Bochs runs, builds and tests used about 1.4-1.8 of its 2 cores
// (load 7-15), so scheduling delay dominates every tail; a quiet machine
// should re-run the script.
//
// 100 checkpoints a second, -mem 1g -dirty-rate 50000 -epoch 10ms
// -duration 10s -loopback-bytes 0, the engine of main (before) and of this
// change (after), 5 runs each, interleaved, in two sets. Set A (2026-12-02
// 09:07-09:11, load 6.7-11.6, other processes 1.42-1.53 cores, 0.77-0.99
// of our threads waiting for a CPU on average):
//
//	                    before                    after
//	release p99 median  21.0 ms                   14.9 ms (goal: epoch + 5)
//	  runs              39.8 13.1 59.8 21.0 12.6  25.7 12.1 44.0 13.4 14.9
//	release p50 median  6.7 ms                    6.3 ms
//	ack p99 median      4.3 ms                    2.8 ms
//	checkpoint gap p99  13.9 ms                   14.2 ms
//	pause p99           0.47 ms                   0.39 ms
//
// Set B (09:17-09:20, load 1.4-5.0, other processes 0.77-1.39 cores, but
// 0.37-1.64 of our threads waiting for a CPU):
//
//	                    before                    after
//	release p99 median  75.5 ms                   38.8 ms
//	  runs              92.3 75.5 35.7 27.8 956   88.1 38.8 34.6 25.7 44.0
//	ack p99 median      12.6 ms                   7.6 ms
//	pause p99           1.34 ms                   0.84 ms
//
// After is better in 9 of the 10 pairs, but the goal is met only in set A,
// and barely.
// The spread within each set is as large as the difference between them;
// earlier sets of 5, not interleaved, gave medians of 50.3 ms (before, load
// 3-6) and 33.0 ms (after, load 10-11). Where the time went, from per-stage
// timestamps of both processes and schedstat: the intrinsic pipeline from
// resume to release is about 1.1 ms (p50) and 2.5 ms (p99) when both
// processes get a CPU; the tails are stretches of 50-800 ms in which one
// process was not run (its threads waited for a CPU about as long as they
// ran). What the engine did wrong on top of that, and no longer does: a
// delayed checkpoint loop paused the guest to copy everything written
// during the delay (dirty sets of 7,000-42,000 pages, a 431 ms pause),
// then reallocated and pre-faulted a snapshot twice that size (924 ms for
// 167 MB, the old one leaked); the secondary's undo log reallocated itself
// on the Go heap in the middle of an apply; every delta page cost two heap
// allocations and two diffs (914 allocations per checkpoint, now 25:
// BenchmarkCheckpointPipeline); and the simulated guest made up any time
// it was not run in one burst (a descheduled vCPU does not: simguest.MaxLag
// now bounds that to 10 ms). GC was not a cause: 3 collections in a 10 s
// run (GODEBUG=gctrace=1).
//
// Failover, -mem 64m -duration 2s -loopback-bytes 0, 20 runs (09:11-09:12,
// load 6.1-6.5, other processes 1.67-1.81 cores): median 14.6 ms, max
// 30.8 ms, 20 of 20 under 50 ms, no false failover. (At load 9-11 with the
// 500 ms deadline: median 12.8 ms, max 157.5 ms; in the 30 s runs beside
// the busy loop at load 7.5-15: median 54.9 ms, max 348 ms.) A kill is
// detected when the kernel closes the dead primary's socket, which it does
// only after tearing the process down (exit_mm before exit_files), so the
// time is the kernel's: each run line gives the time until the secondary's
// session ended (detect) and until the orchestrator reaped the primary
// (exit, later still), and the takeover after detection adds well under
// a millisecond.
//
// Before (2026-12-02, earlier session): median 197 ms with the heartbeat
// deadline; then median 10.4 ms, max 501 ms at load 10-12. The 501 ms was
// the 500 ms deadline firing before the reset was read; the likely cause
// (not observed in that run, but reproduced on a fake clock by
// TestOwnStallIsNotSilence) is a secondary that, itself not scheduled for
// a while, woke and counted its own stall as the primary's silence before
// its reader had run: silence is now counted only for the time a side was
// itself running.
//
// False failovers, 20 runs of 30 s with a busy loop pinned to CPU 1
// (08:54-09:05, load 7.5-15.3, the 1 s deadline): 0 of 20. With a 500 ms
// deadline (08:16-08:26, load 8.6-22.8): 2 of 20, once a live primary that
// sent nothing for 501 ms of the secondary's running time, once a primary
// that dropped its starved secondary and so closed the link (a primary now
// waits two deadlines before it drops a silent secondary); in the
// failover set at load 9-11 once more a primary silent for 625 ms. Hence
// the 1 s default deadline here: a silent link is detected in 1 s, a
// killed primary as before.
//
// # Compression (issue 12, "Bytes on the wire")
//
// scripts/ftsim-report.sh wire: -mem 64m -dirty-rate 12000 -epoch 25ms
// -duration 5s, 3 runs each (2026-12-02 12:35-12:38, load 22-27, all
// verified). Wire bytes over raw dirty bytes per checkpoint, medians:
//
//	guest                     off     s2      zstd
//	random words (default)    0.394   0.341   0.350
//	-compressible             0.385   0.204   no checkpoint in 5 s
//
// The deltas already cut random words to about 0.4; compression adds
// little there (record headers), and after a group that does not pay the
// engine stops trying for a while. Compressible pages halve again with
// s2. zstd on them could not keep the sync ahead of a guest dirtying
// 49 MB/s while this loaded machine gave the primary a fraction of a core
// (its CPU cost is 4-5 times s2's): over loopback TCP, or any link faster
// than the compressor, use s2 or -compress off. In the emulators, where
// the link carries a few MB/s, zstd is the default (ftmirror/doc.go).
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
	"github.com/doppel-ft/doppel/ftmirror"
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
	role         string
	mem          size
	rate         float64
	pattern      string
	epoch        time.Duration
	duration     time.Duration
	killAfter    string
	seed         uint64
	json         bool
	group        size
	forward      bool
	hb           time.Duration
	hbMiss       int
	resyncPages  int
	resyncAfter  time.Duration
	fault        string
	faultNth     int
	partition    time.Duration
	after        time.Duration
	words        int
	loopBytes    size
	shadow       size
	zeroEvery    int
	compress     string
	compressible bool
	verbose      bool
	runs         int
	// children
	dir, world, connect, name string
}

func (o *opts) params() simguest.Params {
	pat, _ := simguest.ParsePattern(o.pattern)
	return simguest.Params{Pages: int(o.mem) / simguest.PageSize, Seed: o.seed, Pattern: pat,
		Rate: o.rate, Words: o.words, ZeroEvery: o.zeroEvery, Compressible: o.compressible}
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
	flag.StringVar(&o.compress, "compress", "zstd", "compression of GROUP frames, kept per group where it pays: zstd, s2, off")
	flag.BoolVar(&o.compressible, "compressible", false, "the guest writes small integers (pages compress about 3:1) instead of random words")
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
	if _, err := ftmirror.ParseCompression(o.compress); err != nil {
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
