package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

// report is the run's result; JSON keys are the issue's.
type report struct {
	SyncS       float64 `json:"sync_s"`
	SyncMBs     float64 `json:"sync_mb_s"`
	LoopbackMBs float64 `json:"loopback_mb_s"`
	Checkpoints int     `json:"checkpoints"`
	PauseP50    float64 `json:"pause_p50_ms"`
	PauseP99    float64 `json:"pause_p99_ms"`
	PauseMax    float64 `json:"pause_max_ms"`
	WirePerCk   float64 `json:"wire_bytes_per_ckpt"`
	DirtyPerCk  float64 `json:"dirty_bytes_per_ckpt"`
	// GROUP frames: the codec, how many were sent and how many of them
	// compressed, and their payload bytes before and after compression.
	Compression      string  `json:"compression"`
	Groups           int     `json:"groups"`
	GroupsCompressed int     `json:"groups_compressed"`
	GroupRawBytes    int64   `json:"group_raw_bytes"`
	GroupWireBytes   int64   `json:"group_wire_bytes"`
	ReleaseP50       float64 `json:"release_p50_ms"`
	ReleaseP99       float64 `json:"release_p99_ms"`
	FailoverMs       float64 `json:"failover_ms"`
	// Where the failover time went: from the kill until the primary's
	// process was reaped (the kernel closes its sockets before that), and
	// until the secondary's session ended (it saw the close or the silence).
	ExitMs      float64  `json:"primary_exit_ms,omitempty"`
	DetectMs    float64  `json:"detect_ms,omitempty"`
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
	SessionEnd  string   `json:"session_end,omitempty"` // why the secondary's link session ended
	// Facts of the last session the verifier decides from: what the
	// primary had been acknowledged (complete epochs) and had released
	// before it died, and whether the secondary held a complete epoch.
	AckedBeforeKill    uint64 `json:"acked_before_kill"`
	ReleasedBeforeKill bool   `json:"released_before_kill"`
	HeldComplete       bool   `json:"secondary_held_complete"`
	FalseFailover      bool   `json:"false_failover,omitempty"` // the secondary lost a live primary
	// How busy the machine was: the 1-minute load average when the run
	// started, and the cores other processes used while it was protected
	// (from the end of the sync to the kill).
	Load1     float64 `json:"load1"`
	OthersRun float64 `json:"others_cores_during_run"`
	// The primary's and secondary's threads that were runnable but waiting
	// for a CPU, on average over the protected run (schedstat).
	WaitingRun float64 `json:"threads_waiting_for_cpu"`
	GapP99     float64 `json:"ckpt_gap_p99_ms"`
	GapMax     float64 `json:"ckpt_gap_max_ms"`
	// Checkpoints that began over half an epoch late (and forwarded
	// first), and pauses that had to grow the snapshot.
	Late      int `json:"late_checkpoints"`
	SnapGrown int `json:"snap_grown_in_pause"`
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
	rep.Compression, rep.Groups, rep.GroupsCompressed = sum.Compression, sum.Groups, sum.GroupsCompressed
	rep.GroupRawBytes, rep.GroupWireBytes = sum.GroupRawBytes, sum.GroupWireBytes
	rep.ReleaseP50, rep.ReleaseP99, rep.AckP99 = sum.ReleaseP50ms, sum.ReleaseP99ms, sum.AckP99ms
	rep.Rounds = sum.BrownoutRounds
	rep.GapP99, rep.GapMax = sum.GapP99ms, sum.GapMaxms
	rep.Late, rep.SnapGrown = sum.LateCheckpoints, sum.SnapGrownInPause

	bad := func(f string, a ...any) { rep.Details = append(rep.Details, fmt.Sprintf(f, a...)) }
	var res secondaryResult
	if err := readJSON(filepath.Join(o.dir, secName+".json"), &res); err != nil {
		bad("no result from secondary %s: %v", secName, err)
	}
	pl := primaryLog(filepath.Join(o.dir, "primary.log"))
	acked, released := pl.acked, pl.released
	rep.AckedBeforeKill, rep.ReleasedBeforeKill, rep.HeldComplete = pl.lastAcked, pl.lastReleased, res.Complete
	// A session that ended before the primary was killed (or with the
	// primary never killed, the secondary having finished first) lost a
	// live primary: a false failover. Correct, but counted.
	if o.fault == "" && o.partition == 0 && res.SessionAt != 0 &&
		(killedAt.IsZero() || time.Unix(0, res.SessionAt).Before(killedAt)) {
		rep.FalseFailover = true
		rep.Details = append(rep.Details, "note: false failover: the secondary's session ended before the primary was killed: "+res.SessionEnd)
	}
	w.mu.Lock()
	data := append([]byte(nil), w.data...)
	errs := append([]string(nil), w.errs...)
	w.mu.Unlock()
	rep.WorldBytes = len(data)
	rep.SessionEnd = res.SessionEnd
	for _, e := range errs {
		bad("world: %s", e)
	}
	if res.Error != "" {
		bad("secondary: %s", res.Error)
	}
	switch o.fault {
	case "corrupt", "forge":
		// The MAC is the frame's only check (ftmirror/wire, version 5).
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
			rep.DetectMs = float64(res.SessionAt-killedAt.UnixNano()) / 1e6
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
		// No takeover is right only if the secondary never held a complete
		// epoch; then the primary cannot have had one acknowledged by it,
		// nor released anything in that session. The expected outcome
		// follows from these facts of the run, whatever the kind of kill.
		switch {
		case res.Complete:
			bad("secondary did not take over although it held a complete epoch: %s (session ended: %s)", res.Reason, res.SessionEnd)
		case pl.lastAcked > 0:
			bad("secondary did not take over although the primary had its ack for complete epoch %d (%s)", pl.lastAcked, res.Reason)
		case pl.lastReleased:
			bad("secondary did not take over although the primary released output in its session (%s)", res.Reason)
		case res.Reason == "":
			bad("secondary did not take over and gave no reason (session ended: %s)", res.SessionEnd)
		default:
			rep.Details = append(rep.Details, "note: no takeover, as expected (no complete epoch was acknowledged before the kill): "+res.Reason)
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

// primaryFacts is what the primary logged: the highest acked and released
// epochs over the run, and whether its last session (the one with the
// current secondary) had a complete epoch acknowledged or released output.
type primaryFacts struct {
	acked, released uint64
	lastAcked       uint64
	lastReleased    bool
}

func primaryLog(path string) primaryFacts {
	var pf primaryFacts
	f, err := os.Open(path)
	if err != nil {
		return pf
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var what string
		var e uint64
		if n, _ := fmt.Sscanf(sc.Text(), "%s %d", &what, &e); n != 2 {
			continue
		}
		switch what {
		case "session-start":
			pf.lastAcked, pf.lastReleased = 0, false
		case string(ftmirror.PointAcked):
			pf.acked = max(pf.acked, e)
			pf.lastAcked = max(pf.lastAcked, e)
		case string(ftmirror.PointMidRelease), string(ftmirror.PointReleased):
			pf.released = max(pf.released, e)
			pf.lastReleased = true
		}
	}
	return pf
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
	fmt.Printf("load average %.2f at the start; other processes on this machine used %.2f cores during the loopback test, %.2f during the sync, %.2f during the protected run (when on average %.2f of our threads waited for a CPU)\n",
		r.Load1, r.OthersLoop, r.OthersSync, r.OthersRun, r.WaitingRun)
	fmt.Printf("checkpoints: %d (%d late), pause p50 %.3f ms, p99 %.3f ms, max %.3f ms (%d grew the snapshot)\n",
		r.Checkpoints, r.Late, r.PauseP50, r.PauseP99, r.PauseMax, r.SnapGrown)
	fmt.Printf("per checkpoint: %.0f bytes on the wire, %.0f dirty bytes (%.1f%%)\n", r.WirePerCk, r.DirtyPerCk, 100*r.WirePerCk/max(r.DirtyPerCk, 1))
	fmt.Printf("groups: %d, %d sent compressed (%s), %d payload bytes sent as %d (%.1f%%)\n", r.Groups, r.GroupsCompressed, r.Compression,
		r.GroupRawBytes, r.GroupWireBytes, 100*float64(r.GroupWireBytes)/float64(max(r.GroupRawBytes, 1)))
	fmt.Printf("output release latency: p50 %.2f ms, p99 %.2f ms (ack p99 %.2f ms, checkpoint gap p99 %.2f ms, max %.2f ms)\n",
		r.ReleaseP50, r.ReleaseP99, r.AckP99, r.GapP99, r.GapMax)
	fmt.Printf("failover: %.1f ms (kill %q, takeover at epoch %d, world saw %d bytes); the primary's process was reaped %.1f ms after the kill, the secondary's session ended after %.1f ms\n",
		r.FailoverMs, r.Kill, r.Epoch, r.WorldBytes, r.ExitMs, r.DetectMs)
	if r.SessionEnd != "" {
		fmt.Printf("secondary's link session ended: %s\n", r.SessionEnd)
	}
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
