package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

// report is the run's result; JSON keys are the issue's.
type report struct {
	SyncS       float64  `json:"sync_s"`
	SyncMBs     float64  `json:"sync_mb_s"`
	LoopbackMBs float64  `json:"loopback_mb_s"`
	Checkpoints int      `json:"checkpoints"`
	PauseP50    float64  `json:"pause_p50_ms"`
	PauseP99    float64  `json:"pause_p99_ms"`
	PauseMax    float64  `json:"pause_max_ms"`
	WirePerCk   float64  `json:"wire_bytes_per_ckpt"`
	DirtyPerCk  float64  `json:"dirty_bytes_per_ckpt"`
	ReleaseP50  float64  `json:"release_p50_ms"`
	ReleaseP99  float64  `json:"release_p99_ms"`
	FailoverMs  float64  `json:"failover_ms"`
	Verify      string   `json:"verify"`
	Details     []string `json:"details,omitempty"`
	Kill        string   `json:"kill,omitempty"`
	Epoch       uint64   `json:"takeover_epoch"`
	KilledEpoch uint64   `json:"killed_epoch,omitempty"` // epoch (or brownout round) of a point kill
	OthersLoop  float64  `json:"others_cores_during_loopback"`
	OthersSync  float64  `json:"others_cores_during_sync"`
	WorldBytes  int      `json:"world_bytes"`
	AckP99      float64  `json:"ack_p99_ms"`
	Rounds      []int    `json:"brownout_round_pages,omitempty"`
}

// rawPid is the loopback baseline's sender while it runs.
var rawPid atomic.Int64

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
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
	go func() { cmd.Wait(); logf.Close(); close(c.done) }()
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

func orchestrate(o *opts) (bool, error) {
	keep := o.dir != ""
	d, err := os.MkdirTemp(o.dir, "ftsim")
	if err != nil {
		return false, err
	}
	if !keep {
		defer os.RemoveAll(d)
	}
	o.dir = d
	rep := report{Kill: o.killAfter}
	w := newWorld()
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, err
	}
	defer wl.Close()
	go w.serve(wl)
	o.world = wl.Addr().String()

	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false, err
	}
	plf, err := pl.(*net.TCPListener).File()
	if err != nil {
		return false, err
	}
	connect := pl.Addr().String()
	var px *proxy
	if o.fault != "" || o.partition > 0 {
		xl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return false, err
		}
		defer xl.Close()
		px = &proxy{target: connect, fault: o.fault, nth: o.faultNth}
		go px.serve(xl)
		connect = xl.Addr().String()
	}
	prim, err := o.spawn("primary", []*os.File{plf}, "-role", "primary", "-kill-primary-after", o.killAfter)
	if err != nil {
		return false, err
	}
	plf.Close()
	pl.Close()
	defer func() {
		if prim.alive() {
			prim.kill()
		}
	}()
	sec, err := o.spawn("s1", nil, "-role", "secondary", "-connect", connect, "-name", "s1")
	if err != nil {
		return false, err
	}
	secName := "s1"
	// Durations count from when the primary's guest is built and running
	// (allocating and filling a large guest takes seconds here). The raw
	// loopback baseline is measured once both sides are ready, just before
	// the secondary connects and the sync starts.
	for _, f := range []string{"primary.ready", "s1.ready"} {
		for prim.alive() && sec.alive() {
			if _, err := os.Stat(filepath.Join(o.dir, f)); err == nil {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	cpu := &cpuSampler{pids: func() []int {
		var p []int
		for _, c := range []*child{prim, sec} {
			if c.alive() {
				p = append(p, c.cmd.Process.Pid)
			}
		}
		if r := rawPid.Load(); r != 0 {
			p = append(p, int(r))
		}
		return p
	}}
	stopCPU := make(chan struct{})
	defer close(stopCPU)
	go cpu.run(stopCPU)
	loopStart := time.Now()
	if rep.LoopbackMBs, err = o.loopback(); err != nil {
		return false, err
	}
	rep.OthersLoop = cpu.others(loopStart, time.Now())
	os.WriteFile(filepath.Join(o.dir, "go"), nil, 0o644)
	start := time.Now()

	var killedAt time.Time
	killDur, durKill := time.Duration(0), false
	if d, err := time.ParseDuration(o.killAfter); err == nil {
		killDur, durKill = d, true
	}
	endKill := o.duration
	if durKill && killDur < endKill {
		endKill = killDur
	}
	primaryStays := o.fault != "" || o.partition > 0 // a link fault, not a crash
	var cutAt time.Time
	resynced := false
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := start.Add(o.duration + 60*time.Second)
	for sec.alive() && time.Now().Before(deadline) {
		<-tick.C
		el := time.Since(start)
		if o.resyncAfter > 0 && !resynced && el >= o.resyncAfter {
			resynced = true
			sec.kill()
			if sec, err = o.spawn("s2", nil, "-role", "secondary", "-connect", connect, "-name", "s2"); err != nil {
				return false, err
			}
			secName = "s2"
		}
		if px != nil && o.partition > 0 && cutAt.IsZero() && el >= o.partition {
			cutAt = time.Now()
			px.cut()
		}
		if !primaryStays && prim.alive() && el >= endKill {
			killedAt = prim.kill()
		}
	}
	if sec.alive() {
		sec.kill()
		rep.Details = append(rep.Details, "secondary did not finish in time")
	}
	if prim.alive() {
		prim.kill()
	}
	if b, err := os.ReadFile(filepath.Join(o.dir, "killed_at")); err == nil {
		var ns int64
		if n, _ := fmt.Sscanf(string(b), "%d %d", &ns, &rep.KilledEpoch); n == 2 {
			killedAt = time.Unix(0, ns)
		}
	}
	if !cutAt.IsZero() {
		killedAt = cutAt
	}
	time.Sleep(50 * time.Millisecond) // the world drains its connections
	ok := o.verify(&rep, w, secName, killedAt)
	if rep.SyncS > 0 {
		rep.OthersSync = cpu.others(start, start.Add(time.Duration((rep.SyncS+0.05)*1e9)))
	}
	o.print(&rep)
	return ok, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// verify checks the takeover and fills the report.
func (o *opts) verify(rep *report, w *world, secName string, killedAt time.Time) bool {
	var sum ftmirror.Summary
	if err := readJSON(filepath.Join(o.dir, "primary.json"), &sum); err != nil {
		rep.Details = append(rep.Details, "note: no primary stats yet: "+err.Error())
	}
	rep.SyncS, rep.Checkpoints = sum.SyncSeconds, sum.Checkpoints
	if sum.SyncSeconds > 0 {
		rep.SyncMBs = float64(sum.SyncBytes) / sum.SyncSeconds / 1e6
	}
	rep.PauseP50, rep.PauseP99, rep.PauseMax = sum.PauseP50ms, sum.PauseP99ms, sum.PauseMaxms
	rep.WirePerCk, rep.DirtyPerCk = sum.WireBytesPerCkpt, sum.DirtyBytesPerCk
	rep.ReleaseP50, rep.ReleaseP99, rep.AckP99 = sum.ReleaseP50ms, sum.ReleaseP99ms, sum.AckP99ms
	rep.Rounds = sum.BrownoutRounds

	bad := func(f string, a ...any) { rep.Details = append(rep.Details, fmt.Sprintf(f, a...)) }
	var res secondaryResult
	if err := readJSON(filepath.Join(o.dir, secName+".json"), &res); err != nil {
		bad("no result from secondary %s: %v", secName, err)
	}
	acked, released := primaryLog(filepath.Join(o.dir, "primary.log"))
	w.mu.Lock()
	data := append([]byte(nil), w.data...)
	errs := append([]string(nil), w.errs...)
	w.mu.Unlock()
	rep.WorldBytes = len(data)
	for _, e := range errs {
		bad("world: %s", e)
	}
	if res.Error != "" {
		bad("secondary: %s", res.Error)
	}
	switch o.fault {
	case "corrupt":
		expectErr(rep, res.SessionEnd, "checksum mismatch")
	case "forge":
		expectErr(rep, res.SessionEnd, "authentication failed")
	case "replay":
		expectErr(rep, res.SessionEnd, "unexpected sequence number")
	}
	p := o.params()
	if res.Promoted {
		w.mu.Lock()
		last1, ok1 := w.lastFrom[1]
		w.mu.Unlock()
		if ok1 && !last1.Before(time.Unix(0, res.ReadyAt)) {
			bad("two primaries released output: generation 1 released at %v, after the secondary took over at %v",
				last1.Format(time.StampMicro), time.Unix(0, res.ReadyAt).Format(time.StampMicro))
		}
		rep.Epoch = res.Epoch
		if !killedAt.IsZero() {
			rep.FailoverMs = float64(res.ReadyAt-killedAt.UnixNano()) / 1e6
		}
		if res.Epoch < acked || res.Epoch < released {
			bad("secondary took over at epoch %d but the primary had an ack for %d and released %d", res.Epoch, acked, released)
		}
		h := sha256.Sum256(simguest.Replay(p, res.Ops))
		if hex.EncodeToString(h[:]) != res.MemHash {
			bad("secondary memory hash %.16s… != the primary's at epoch %d (%d guest ops) %.16s…", res.MemHash, res.Epoch, res.Ops, hex.EncodeToString(h[:]))
		}
		if want := simguest.ExpectedOutput(p, res.OpsFinal); !bytes.Equal(data, want) {
			bad("world saw %d output bytes, the guest emitted %d (first difference at %d)", len(data), len(want), firstDiff(data, want))
		}
	} else {
		if o.killAfter == "" || !beforeComplete(o.killAfter) {
			bad("secondary did not take over: %s (session ended: %s)", res.Reason, res.SessionEnd)
		} else {
			rep.Details = append(rep.Details, "note: no takeover, as expected: "+res.Reason)
		}
		want := simguest.ExpectedPrefix(p, len(data), 1<<40)
		if !bytes.Equal(data, want[:min(len(data), len(want))]) || len(want) != len(data) {
			bad("world output (%d bytes) is not an exact prefix of the guest's output", len(data))
		}
	}
	ok := true
	for _, d := range rep.Details {
		if !strings.HasPrefix(d, "note: ") {
			ok = false
		}
	}
	rep.Verify = "ok"
	if !ok {
		rep.Verify = "mismatch"
	}
	return ok
}

func beforeComplete(k string) bool {
	for _, p := range []string{"sync-round", "blackout", "resync"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func expectErr(rep *report, got, want string) {
	if !strings.Contains(got, want) {
		rep.Details = append(rep.Details, fmt.Sprintf("secondary session ended with %q, want a %q refusal", got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// primaryLog returns the highest acked and released epochs the primary logged.
func primaryLog(path string) (acked, released uint64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var what string
		var e uint64
		if n, _ := fmt.Sscanf(sc.Text(), "%s %d", &what, &e); n != 2 {
			continue
		}
		switch ftmirror.Point(what) {
		case ftmirror.PointAcked:
			acked = max(acked, e)
		case ftmirror.PointReleased:
			released = max(released, e)
		}
	}
	return acked, released
}

func (o *opts) print(r *report) {
	if o.json {
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
		return
	}
	fmt.Printf("guest: %d MiB, %.0f dirty pages/s, %s, epoch %v\n", int64(o.mem)>>20, o.rate, o.pattern, o.epoch)
	fmt.Printf("initial sync: %.3f s, %.0f MB/s (raw loopback TCP %.0f MB/s, %.0f%%), brownout rounds %v\n",
		r.SyncS, r.SyncMBs, r.LoopbackMBs, 100*r.SyncMBs/max(r.LoopbackMBs, 1), r.Rounds)
	fmt.Printf("other processes on this machine used %.2f cores during the loopback test, %.2f during the sync\n", r.OthersLoop, r.OthersSync)
	fmt.Printf("checkpoints: %d, pause p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", r.Checkpoints, r.PauseP50, r.PauseP99, r.PauseMax)
	fmt.Printf("per checkpoint: %.0f bytes on the wire, %.0f dirty bytes (%.1f%%)\n", r.WirePerCk, r.DirtyPerCk, 100*r.WirePerCk/max(r.DirtyPerCk, 1))
	fmt.Printf("output release latency: p50 %.2f ms, p99 %.2f ms (ack p99 %.2f ms)\n", r.ReleaseP50, r.ReleaseP99, r.AckP99)
	fmt.Printf("failover: %.1f ms (kill %q, takeover at epoch %d, world saw %d bytes)\n", r.FailoverMs, r.Kill, r.Epoch, r.WorldBytes)
	if r.Verify == "ok" {
		fmt.Println("verify: ok")
		for _, d := range r.Details {
			fmt.Println("  " + d)
		}
		return
	}
	fmt.Println("verify: mismatch")
	for _, d := range r.Details {
		fmt.Println("  " + d)
	}
}
