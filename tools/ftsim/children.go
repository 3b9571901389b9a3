package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

// psk is the simulator's pre-shared key (a real pair would provision one).
var psk = []byte("doppel-ftsim-pre-shared-key-32b!")

func (o *opts) engineConfig(gen uint64) ftmirror.Config {
	zip, _ := ftmirror.ParseCompression(o.compress) // checked in main
	return ftmirror.Config{
		Compression: zip,
		PSK:         psk, Generation: gen, Epoch: o.epoch, GroupBytes: int(o.group),
		Heartbeat:           ftmirror.Heartbeat{Interval: o.hb, Misses: o.hbMiss},
		Forward:             o.forward,
		ResyncPagesPerEpoch: o.resyncPages,
		Alloc:               simguest.Alloc,
		ShadowBytes:         int(o.shadow),
	}
}

func writeJSON(path string, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		os.Rename(tmp, path)
	}
}

// killSpec is "point" or "point:N": die at the first occurrence of point
// in an epoch (or brownout round) ≥ N; a point after the sync only once an
// epoch has been acknowledged complete, as doppel.ft.kill does (on a loaded
// machine the first acks can come several epochs late, and a kill before
// them leaves no takeover, which is not what the point means to test).
type killSpec struct {
	point ftmirror.Point
	at    uint64
}

// inSync reports whether the point belongs to a sync (it fires unprotected).
func (k killSpec) inSync() bool {
	return k.point == ftmirror.PointSyncRound || k.point == ftmirror.PointResync || k.point == ftmirror.PointBlackout
}

func parseKill(s string) (killSpec, bool) {
	if s == "" {
		return killSpec{}, false
	}
	if _, err := time.ParseDuration(s); err == nil {
		return killSpec{}, false
	}
	name, n, _ := strings.Cut(s, ":")
	k := killSpec{point: ftmirror.Point(name), at: 3}
	if k.inSync() {
		k.at = 1
	}
	if n != "" {
		v, err := strconv.ParseUint(n, 10, 64)
		if err == nil {
			k.at = v
		}
	}
	return k, true
}

// dying is set at the kill point. From then on nothing more leaves the
// process (its link and world writes block until the SIGKILL lands), so it
// dies exactly there even if other goroutines run on while this one
// records the kill: on a loaded machine they once sent four more epochs.
var dying atomic.Bool

// mortalConn is a link that goes silent once the process is dying.
type mortalConn struct{ net.Conn }

func (c mortalConn) Write(b []byte) (int, error) {
	if dying.Load() {
		select {}
	}
	return c.Conn.Write(b)
}

func die(dir string, e uint64) {
	dying.Store(true)
	os.WriteFile(filepath.Join(dir, "killed_at"), []byte(fmt.Sprintf("%d %d", time.Now().UnixNano(), e)), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// runPrimary is the primary process: the guest, the engine, a session with
// each secondary that connects (on the listener passed as fd 3).
func runPrimary(o *opts) error {
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	g := simguest.New(o.params())
	wc, err := dialWorld(o.world, 1)
	if err != nil {
		return err
	}
	cfg := o.engineConfig(1)
	logf, err := os.OpenFile(filepath.Join(o.dir, "primary.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var logMu sync.Mutex
	kill, hasKill := parseKill(o.killAfter)
	cfg.SplitGroups = hasKill && kill.point == ftmirror.PointMidGroup
	cfg.ExactHooks = hasKill
	var protected atomic.Bool
	cfg.Hook = func(p ftmirror.Point, e uint64) {
		if dying.Load() {
			select {} // the process is dying: nothing more happens
		}
		if p == ftmirror.PointAcked {
			protected.Store(true)
		}
		if p == ftmirror.PointAcked || p == ftmirror.PointReleased || p == ftmirror.PointMidRelease {
			logMu.Lock()
			fmt.Fprintf(logf, "%s %d\n", p, e)
			logMu.Unlock()
		}
		if hasKill && p == kill.point && e >= kill.at && (protected.Load() || kill.inSync()) {
			die(o.dir, e)
		}
	}
	p := ftmirror.NewPrimary(cfg, g, g, g, wc)
	g.Emit = p.Output
	stop := make(chan struct{})
	go g.Run(stop)
	os.WriteFile(filepath.Join(o.dir, "primary.ready"), nil, 0o644)
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			writeJSON(filepath.Join(o.dir, "primary.json"), p.Stats.Summary())
		}
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		tuneConn(c)
		warm(g.Memory(), false)
		profile("primary")
		logMu.Lock()
		fmt.Fprintf(logf, "session-start 0\n") // the facts below are this session's
		logMu.Unlock()
		err = p.Serve(mortalConn{c})
		logMu.Lock()
		fmt.Fprintf(logf, "session-end %q\n", err)
		logMu.Unlock()
		writeJSON(filepath.Join(o.dir, "primary.json"), p.Stats.Summary())
		if errors.Is(err, ftmirror.ErrFenced) {
			return err
		}
	}
}

// warm touches every page of mem (reading it, or writing its first byte
// back) right before the sync. This host VM backs memory lazily and takes
// back pages not used for a while; on bare metal guest RAM is resident.
func warm(mem []byte, write bool) {
	var x byte
	for i := 0; i < len(mem); i += simguest.PageSize {
		x += mem[i]
		if write {
			mem[i] = x - (x - mem[i]) // the same byte, written
		}
	}
	warmSink = x
}

var warmSink byte

func tuneConn(c net.Conn) {
	if t, ok := c.(*net.TCPConn); ok {
		t.SetNoDelay(true)
		t.SetReadBuffer(4 << 20)
		t.SetWriteBuffer(4 << 20)
	}
}

// secondaryResult is what a secondary process reports.
type secondaryResult struct {
	Name       string `json:"name"`
	SessionEnd string `json:"session_end"`
	SessionAt  int64  `json:"session_end_unix_ns"`
	Complete   bool   `json:"held_complete_epoch"` // a complete committed epoch when the session ended
	Promoted   bool   `json:"promoted"`
	Reason     string `json:"reason,omitempty"`
	Epoch      uint64 `json:"epoch"`
	Ops        uint64 `json:"ops_at_takeover"`
	MemHash    string `json:"mem_hash"`
	LastHeard  int64  `json:"last_heard_unix_ns"`
	ReadyAt    int64  `json:"ready_unix_ns"`
	WorldAt    uint64 `json:"world_offset_at_takeover"`
	OutOffset  uint64 `json:"out_offset"`
	OutEnd     uint64 `json:"out_end"`
	OpsFinal   uint64 `json:"ops_final"`
	Error      string `json:"error,omitempty"`
}

// runSecondary is a secondary process: mirror until the primary is lost,
// then take over, release what the world has not seen, and run the guest
// as the new primary for a while.
func runSecondary(o *opts) error {
	res := secondaryResult{Name: o.name}
	out := filepath.Join(o.dir, o.name+".json")
	defer func() { writeJSON(out, &res) }()
	g := simguest.NewBlank(o.params())
	s := ftmirror.NewSecondary(o.engineConfig(0), g)
	// Wait until the orchestrator has measured raw loopback TCP, so that the
	// sync runs right after the baseline it is compared with.
	os.WriteFile(filepath.Join(o.dir, o.name+".ready"), nil, 0o644)
	for i := 0; i < 60000; i++ {
		if _, err := os.Stat(filepath.Join(o.dir, "go")); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	warm(g.Memory(), true)
	var c net.Conn
	var err error
	for i := 0; i < 200; i++ {
		if c, err = net.Dial("tcp", o.connect); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		// Nobody listens: the primary was killed before this secondary
		// could connect (an early time kill on a loaded host, where
		// warming a large guest's memory takes a while). Nothing was
		// mirrored, so there is nothing to take over.
		res.Reason = "never connected, the primary was gone: " + err.Error()
		return nil
	}
	if err != nil {
		res.Error = err.Error()
		return err
	}
	tuneConn(c)
	profile(o.name)
	res.SessionEnd = fmt.Sprint(s.Serve(c))
	res.SessionAt = time.Now().UnixNano()
	_, res.Complete = s.Committed()
	time.Sleep(time.Until(s.PromoteAt()))
	tk, err := s.Takeover()
	if err != nil {
		res.Reason = err.Error()
		return nil
	}
	if err := g.Restore(tk.Blobs); err != nil {
		res.Error = err.Error()
		return err
	}
	res.Promoted, res.Epoch, res.Ops = true, tk.Epoch, g.Ops()
	res.ReadyAt = time.Now().UnixNano()
	res.LastHeard = s.LastHeard().UnixNano()
	h := sha256.Sum256(g.Memory()) // verification only; not part of failover
	res.MemHash = hex.EncodeToString(h[:])
	res.OutOffset, res.OutEnd = tk.OutOffset, tk.OutEnd

	wc, err := dialWorld(o.world, 2) // also fences generation 1 at the world
	if err != nil {
		res.Error = err.Error()
		return err
	}
	res.WorldAt = wc.Next
	if wc.Next < tk.OutOffset || wc.Next > tk.OutEnd {
		res.Error = fmt.Sprintf("world at offset %d, committed output covers [%d,%d)", wc.Next, tk.OutOffset, tk.OutEnd)
		return errors.New(res.Error)
	}
	if err := wc.Release(wc.Next, tk.Out[wc.Next-tk.OutOffset:]); err != nil {
		res.Error = err.Error()
		return err
	}
	cfg := o.engineConfig(2)
	p := ftmirror.NewPrimary(cfg, g, g, g, wc)
	p.Continue(tk.Epoch, tk.OutEnd, true)
	g.Emit = p.Output
	stopG, stopP := make(chan struct{}), make(chan struct{})
	doneG, doneP := make(chan struct{}), make(chan struct{})
	go func() { g.Run(stopG); close(doneG) }()
	go func() { p.RunAlone(stopP); close(doneP) }()
	time.Sleep(o.after)
	close(stopG)
	<-doneG
	close(stopP)
	<-doneP
	res.OpsFinal = g.Ops()
	time.Sleep(20 * time.Millisecond) // let the world read the last records
	return nil
}

// runRawSend writes n bytes to addr in 1 MiB writes (loopback baseline).
func runRawSend(o *opts) error {
	c, err := net.Dial("tcp", o.connect)
	if err != nil {
		return err
	}
	tuneConn(c)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for sent := int64(0); sent < int64(o.mem); sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	return c.Close()
}
