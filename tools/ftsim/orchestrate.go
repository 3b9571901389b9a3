package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"
)

// rawPid is the loopback baseline's sender while it runs.
var rawPid atomic.Int64

type child struct {
	cmd    *exec.Cmd
	done   chan struct{}
	exited time.Time // when Wait returned (the process was reaped); read after done
}

func (o *opts) spawn(name string, extra []*os.File, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	base := []string{
		"-mem", fmt.Sprint(int64(o.mem)), "-dirty-rate", fmt.Sprint(o.rate), "-pattern", o.pattern,
		"-epoch", o.epoch.String(), "-seed", fmt.Sprint(o.seed), "-group", fmt.Sprint(int64(o.group)),
		"-hb", o.hb.String(), "-hb-miss", fmt.Sprint(o.hbMiss), "-resync-pages", fmt.Sprint(o.resyncPages),
		"-after", o.after.String(), "-words", fmt.Sprint(o.words), "-zero-every", fmt.Sprint(o.zeroEvery),
		"-dir", o.dir, "-world", o.world, "-shadow", fmt.Sprint(int64(o.shadow)), fmt.Sprintf("-forward=%v", o.forward),
		"-compress", o.compress, fmt.Sprintf("-compressible=%v", o.compressible),
	}
	cmd := exec.Command(exe, append(base, args...)...)
	cmd.ExtraFiles = extra
	logf, err := os.Create(filepath.Join(o.dir, name+".out"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if o.verbose {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(logf, os.Stderr), io.MultiWriter(logf, os.Stderr)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); c.exited = time.Now(); logf.Close(); close(c.done) }()
	return c, nil
}

func (c *child) kill() time.Time {
	t := time.Now()
	c.cmd.Process.Kill()
	<-c.done
	return t
}

func (c *child) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// loopback measures raw TCP throughput between two processes on loopback.
func (o *opts) loopback() (float64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	n := max(int64(o.mem), 256<<20)
	if o.loopBytes >= 0 {
		n = int64(o.loopBytes)
	}
	if n == 0 {
		return 0, nil
	}
	oc := *o
	oc.mem = size(n)
	ch, err := oc.spawn("rawsend", nil, "-role", "rawsend", "-connect", l.Addr().String())
	if err != nil {
		return 0, err
	}
	rawPid.Store(int64(ch.cmd.Process.Pid))
	defer rawPid.Store(0)
	c, err := l.Accept()
	if err != nil {
		return 0, err
	}
	tuneConn(c)
	buf := make([]byte, 1<<20)
	start := time.Now()
	got, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, buf)
	el := time.Since(start)
	<-ch.done
	if got < n {
		return 0, fmt.Errorf("loopback: got %d of %d bytes", got, n)
	}
	return float64(got) / el.Seconds() / 1e6, nil
}

// run is one orchestrated simulation.
type run struct {
	o         *opts
	rep       report
	w         *world
	px        *proxy
	connect   string // where secondaries connect (the primary, or the proxy)
	prim, sec *child
	secName   string
	cpu       *cpuSampler
	start     time.Time // the sync starts
	killedAt  time.Time
	closers   []func()
}

// orchestrate runs one simulation and returns its report and whether it
// verified.
func orchestrate(o *opts) (report, bool, error) {
	keep := o.dir != ""
	d, err := os.MkdirTemp(o.dir, "ftsim")
	if err != nil {
		return report{}, false, err
	}
	if !keep {
		defer os.RemoveAll(d)
	}
	o.dir = d
	r := &run{o: o, rep: report{Kill: o.killAfter, Load1: loadAvg()}, secName: "s1"}
	defer func() {
		for i := len(r.closers) - 1; i >= 0; i-- {
			r.closers[i]()
		}
	}()
	if err := r.startProcesses(); err != nil {
		return report{}, false, err
	}
	if err := r.baseline(); err != nil {
		return report{}, false, err
	}
	if err := r.supervise(); err != nil {
		return report{}, false, err
	}
	ok := r.finish()
	return r.rep, ok, nil
}

// startProcesses starts the world, the proxy if a link fault is asked for,
// the primary (on a listener passed as fd 3) and the first secondary.
func (r *run) startProcesses() error {
	o := r.o
	r.w = newWorld()
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.closers = append(r.closers, func() { wl.Close() })
	go r.w.serve(wl)
	o.world = wl.Addr().String()
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	plf, err := pl.(*net.TCPListener).File()
	if err != nil {
		return err
	}
	r.connect = pl.Addr().String()
	if o.fault != "" || o.partition > 0 {
		xl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		r.closers = append(r.closers, func() { xl.Close() })
		r.px = &proxy{target: r.connect, fault: o.fault, nth: o.faultNth}
		go r.px.serve(xl)
		r.connect = xl.Addr().String()
	}
	r.prim, err = o.spawn("primary", []*os.File{plf}, "-role", "primary", "-kill-primary-after", o.killAfter)
	plf.Close()
	pl.Close()
	if err != nil {
		return err
	}
	r.closers = append(r.closers, func() {
		if r.prim.alive() {
			r.prim.kill()
		}
	})
	r.sec, err = o.spawn("s1", nil, "-role", "secondary", "-connect", r.connect, "-name", "s1")
	return err
}

// baseline waits until both sides are ready (allocating and filling a large
// guest takes seconds here), measures raw loopback TCP, and then lets the
// secondary connect: the sync runs right after the baseline it is compared
// with. Durations count from here.
func (r *run) baseline() error {
	o := r.o
	for _, f := range []string{"primary.ready", "s1.ready"} {
		for r.prim.alive() && r.sec.alive() {
			if _, err := os.Stat(filepath.Join(o.dir, f)); err == nil {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	r.cpu = &cpuSampler{pids: func() []int {
		var p []int
		for _, c := range []*child{r.prim, r.sec} {
			if c.alive() {
				p = append(p, c.cmd.Process.Pid)
			}
		}
		if pid := rawPid.Load(); pid != 0 {
			p = append(p, int(pid))
		}
		return p
	}}
	stop := make(chan struct{})
	r.closers = append(r.closers, func() { close(stop) })
	go r.cpu.run(stop)
	loopStart := time.Now()
	var err error
	if r.rep.LoopbackMBs, err = o.loopback(); err != nil {
		return err
	}
	r.rep.OthersLoop = r.cpu.others(loopStart, time.Now())
	os.WriteFile(filepath.Join(o.dir, "go"), nil, 0o644)
	r.start = time.Now()
	return nil
}

// supervise runs the timed events (resync, partition, kill) until the
// current secondary has finished.
func (r *run) supervise() error {
	o := r.o
	endKill := o.duration
	if d, err := time.ParseDuration(o.killAfter); err == nil && d < endKill {
		endKill = d
	}
	primaryStays := o.fault != "" || o.partition > 0 // a link fault, not a crash
	var cutAt time.Time
	resynced := false
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := r.start.Add(o.duration + 60*time.Second)
	for r.sec.alive() && time.Now().Before(deadline) {
		<-tick.C
		el := time.Since(r.start)
		if o.resyncAfter > 0 && !resynced && el >= o.resyncAfter {
			resynced = true
			r.sec.kill()
			var err error
			if r.sec, err = o.spawn("s2", nil, "-role", "secondary", "-connect", r.connect, "-name", "s2"); err != nil {
				return err
			}
			r.secName = "s2"
		}
		if r.px != nil && o.partition > 0 && cutAt.IsZero() && el >= o.partition {
			cutAt = time.Now()
			r.px.cut()
		}
		if !primaryStays && r.prim.alive() && el >= endKill {
			r.killedAt = r.prim.kill()
		}
	}
	if r.sec.alive() {
		r.sec.kill()
		r.rep.Details = append(r.rep.Details, "secondary did not finish in time")
	}
	if r.prim.alive() {
		r.prim.kill()
	}
	if !cutAt.IsZero() {
		r.killedAt = cutAt
	}
	return nil
}

// finish verifies and completes the report.
func (r *run) finish() bool {
	o := r.o
	if b, err := os.ReadFile(filepath.Join(o.dir, "killed_at")); err == nil {
		var ns int64
		if n, _ := fmt.Sscanf(string(b), "%d %d", &ns, &r.rep.KilledEpoch); n == 2 {
			r.killedAt = time.Unix(0, ns)
		}
	}
	time.Sleep(50 * time.Millisecond) // the world drains its connections
	ok := o.verify(&r.rep, r.w, r.secName, r.killedAt)
	if !r.killedAt.IsZero() && !r.prim.alive() && r.prim.exited.After(r.killedAt) && o.partition == 0 {
		r.rep.ExitMs = float64(r.prim.exited.Sub(r.killedAt)) / 1e6
	}
	if r.rep.SyncS > 0 {
		synced := r.start.Add(time.Duration((r.rep.SyncS + 0.05) * 1e9))
		r.rep.OthersSync = r.cpu.others(r.start, synced)
		end := r.killedAt
		if end.IsZero() {
			end = time.Now()
		}
		r.rep.OthersRun = r.cpu.others(synced, end)
		r.rep.WaitingRun = r.cpu.waiting(synced, end)
	}
	return ok
}
