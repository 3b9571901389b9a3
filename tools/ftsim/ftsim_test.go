package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var ftsimBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ftsim-test")
	if err != nil {
		panic(err)
	}
	ftsimBin = filepath.Join(dir, "ftsim")
	if out, err := exec.Command("go", "build", "-o", ftsimBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// small is the common setting of the scenarios: a 32 MiB guest, 16 KiB
// groups (several per checkpoint), no loopback baseline, and a 1 s
// heartbeat deadline so that a scheduling stall on this shared machine is
// not taken for a dead peer.
var small = []string{"-hb", "10ms", "-hb-miss", "100", "-mem", "32m", "-group", "16k", "-duration", "1500ms", "-after", "150ms", "-loopback-bytes", "0", "-json"}

func runSim(t *testing.T, args ...string) report {
	t.Helper()
	cmd := exec.Command(ftsimBin, append(append([]string(nil), small...), args...)...)
	out, err := cmd.Output()
	var r report
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("ftsim %v: %v\n%s", args, jerr, out)
	}
	if err != nil || r.Verify != "ok" {
		t.Fatalf("ftsim %s: verify %s: %s (exit %v)", strings.Join(args, " "), r.Verify, strings.Join(r.Details, "; "), err)
	}
	return r
}

// TestFailoverAtKillPoints kills the primary at 20 points, from before the
// initial sync ends to the middle of a resync, and requires the takeover to
// verify: memory equal to the primary's at the committed epoch, the output
// stream seen exactly once with no gap.
func TestFailoverAtKillPoints(t *testing.T) {
	scenarios := []struct {
		name       string
		args       []string
		noTakeover bool
		partial    bool // killed with the epoch's END unsent
	}{
		{"sync-round-1", []string{"-kill-primary-after", "sync-round:1"}, true, false},
		{"sync-round-2", []string{"-kill-primary-after", "sync-round:2"}, true, false},
		{"blackout", []string{"-kill-primary-after", "blackout"}, true, false},
		// A time kill before the sync can complete: no takeover, verify ok.
		{"150ms-before-sync", []string{"-mem", "256m", "-kill-primary-after", "150ms"}, true, false},
		{"after-1s", []string{"-kill-primary-after", "1s", "-duration", "2s"}, false, false},
		{"begin", []string{"-kill-primary-after", "begin:4"}, false, true},
		{"mid-epoch", []string{"-kill-primary-after", "mid-epoch:4"}, false, true},
		{"paused", []string{"-kill-primary-after", "paused:5"}, false, true},
		{"mid-group", []string{"-kill-primary-after", "mid-group:5"}, false, true},
		{"between-groups", []string{"-kill-primary-after", "between-groups:5"}, false, true},
		{"mid-group-no-forwarding", []string{"-forward=false", "-kill-primary-after", "mid-group:6"}, false, true},
		{"before-end", []string{"-kill-primary-after", "before-end:6"}, false, true},
		// END queued for the writer: it may or may not have left.
		{"after-end", []string{"-kill-primary-after", "after-end:6"}, false, false},
		{"acked", []string{"-kill-primary-after", "acked:7"}, false, false},
		{"mid-release", []string{"-kill-primary-after", "mid-release:7"}, false, false},
		{"released", []string{"-kill-primary-after", "released:8"}, false, false},
		{"before-end-no-forwarding", []string{"-forward=false", "-kill-primary-after", "before-end:9"}, false, true},
		{"mid-group-hot-set", []string{"-pattern", "hot", "-kill-primary-after", "mid-group:8"}, false, true},
		{"between-groups-sequential", []string{"-pattern", "sequential", "-kill-primary-after", "between-groups:8"}, false, true},
		{"during-resync", []string{"-resync-after", "500ms", "-resync-pages", "512", "-kill-primary-after", "resync:1"}, true, false},
		{"after-resync", []string{"-resync-after", "500ms", "-resync-pages", "512", "-duration", "2s"}, false, false},
		{"10ms-epochs", []string{"-epoch", "10ms", "-kill-primary-after", "900ms"}, false, false},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			r := runSim(t, sc.args...)
			if took := r.Epoch > 0; took == sc.noTakeover {
				t.Fatalf("takeover at epoch %d; expected a takeover: %v (%v)", r.Epoch, !sc.noTakeover, r.Details)
			}
			// A primary killed before END(e) left was sent leaves the
			// secondary at e-1 (the partial epoch rolled back); after it,
			// at e.
			if r.KilledEpoch > 0 && !sc.noTakeover {
				want := r.KilledEpoch
				if sc.partial {
					want--
				}
				// A secondary whose apply lagged may not have read the
				// last ENDs before the primary's reset discarded them:
				// it may be earlier, but never before an acked epoch.
				if r.Epoch > want || r.Epoch < r.AckedBeforeKill {
					t.Fatalf("killed in epoch %d, took over at %d, want ≤ %d and ≥ the acked %d", r.KilledEpoch, r.Epoch, want, r.AckedBeforeKill)
				}
			}
		})
	}
}

// TestKillAtRandomTimes kills the primary at seeded random times, half of
// them before the initial sync can complete (a 256 MiB guest killed in its
// first 150 ms), half during protected operation. Every run must verify:
// the expected outcome follows from what the run recorded (was a complete
// epoch acknowledged before the kill?), not from the kind of kill.
func TestKillAtRandomTimes(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 0))
	const draws = 20
	early := 0
	for i := 0; i < draws; i++ {
		mem, at := "32m", 150*time.Millisecond+time.Duration(rng.Int64N(int64(1350*time.Millisecond)))
		if i%2 == 0 {
			mem, at = "256m", time.Duration(rng.Int64N(int64(150*time.Millisecond)))
		}
		at = at.Round(time.Millisecond)
		t.Run(fmt.Sprintf("%s-%v", mem, at), func(t *testing.T) {
			r := runSim(t, "-mem", mem, "-kill-primary-after", at.String(), "-duration", "2s")
			if !r.HeldComplete && r.AckedBeforeKill == 0 {
				early++
			}
			if r.Epoch > 0 && r.Epoch < r.AckedBeforeKill {
				t.Fatalf("took over at epoch %d, but the primary had an ack for %d", r.Epoch, r.AckedBeforeKill)
			}
		})
	}
	if early < draws/2 {
		t.Fatalf("only %d of %d kills came before a complete epoch was acknowledged; want at least half", early, draws)
	}
}

// TestBadFramesRefused corrupts, forges and replays a checkpoint frame on
// the link: the secondary must refuse it with the matching error, keep the
// last committed epoch intact, and (the primary being alive but cut off)
// take over without a second primary ever releasing output.
func TestBadFramesRefused(t *testing.T) {
	for _, f := range []string{"corrupt", "forge", "replay"} {
		t.Run(f, func(t *testing.T) {
			r := runSim(t, "-fault", f)
			if r.Epoch == 0 {
				t.Fatal("no takeover after the refused frame")
			}
		})
	}
}

// TestPartitionOneReleaser cuts the link both ways with both processes
// alive: the old primary must stop releasing (no acks) before the secondary
// promotes itself, so the world never gets output from two primaries.
func TestPartitionOneReleaser(t *testing.T) {
	r := runSim(t, "-partition-after", "1200ms")
	if r.Epoch == 0 {
		t.Fatal("no takeover after the partition")
	}
}

// TestSizeFlag checks that -mem and the other size flags take the forms
// people write, and that a bad one is refused with its value named.
func TestSizeFlag(t *testing.T) {
	for in, want := range map[string]size{"256m": 256 << 20, "256M": 256 << 20, "256MB": 256 << 20,
		"256MiB": 256 << 20, "1g": 1 << 30, "1GiB": 1 << 30, "65536": 65536} {
		var s size
		if err := s.Set(in); err != nil || s != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	var s size
	if err := s.Set("1.5G"); err == nil || !strings.Contains(err.Error(), `"1.5G"`) || !strings.Contains(err.Error(), "MiB") {
		t.Errorf("Set(1.5G) = %v; want an error naming the value and the forms", err)
	}
}

// TestBinaryIgnored checks that a `go build` in this directory leaves
// nothing for git to pick up, and that no built file is tracked here.
func TestBinaryIgnored(t *testing.T) {
	if out, err := exec.Command("git", "check-ignore", "-q", "ftsim").CombinedOutput(); err != nil {
		t.Errorf("git check-ignore tools/ftsim/ftsim: %v %s: .gitignore must cover the built binary", err, out)
	}
	out, err := exec.Command("git", "ls-files", ".").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if !strings.HasSuffix(f, ".go") {
			t.Errorf("%s is tracked: only sources belong here", f)
		}
	}
}
