package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// repeat runs the simulation o.runs times and prints one line per run and
// then the medians, so that a figure of the issue is one command that
// anyone can re-run on a quieter machine. It reports whether every run
// verified.
func repeat(o *opts) (bool, error) {
	var reps []report
	allOK := true
	for i := 0; i < o.runs; i++ {
		oc := *o
		rep, ok, err := orchestrate(&oc)
		if err != nil {
			return false, fmt.Errorf("run %d of %d: %w", i+1, o.runs, err)
		}
		allOK = allOK && ok
		reps = append(reps, rep)
		if o.json {
			b, _ := json.Marshal(rep)
			fmt.Println(string(b))
		} else {
			fmt.Printf("run %d/%d: %s\n", i+1, o.runs, rep.line())
		}
	}
	s := summarize(reps)
	if o.json {
		b, _ := json.Marshal(struct {
			Summary summary `json:"summary"`
		}{s})
		fmt.Println(string(b))
	} else {
		s.print()
	}
	return allOK, nil
}

// line is a run's figures on one line.
func (r *report) line() string {
	s := fmt.Sprintf("load %.2f, others %.2f cores, %.2f threads waiting | release p50 %.2f p99 %.2f ms, ack p99 %.2f, gap p99 %.2f max %.2f, pause p99 %.3f | %d ckpts, %d late | wire/dirty %.3f, groups %s %d/%d | failover %.1f ms (exit %.1f, detect %.1f) | verify %s",
		r.Load1, r.OthersRun, r.WaitingRun, r.ReleaseP50, r.ReleaseP99, r.AckP99, r.GapP99, r.GapMax, r.PauseP99, r.Checkpoints, r.Late,
		r.wireRatio(), r.Compression, r.GroupsCompressed, r.Groups, r.FailoverMs, r.ExitMs, r.DetectMs, r.Verify)
	if r.FalseFailover {
		s += " | FALSE FAILOVER"
	}
	if r.SessionEnd != "" {
		s += " | session ended: " + r.SessionEnd
	}
	if r.Verify != "ok" {
		s += " | " + strings.Join(r.Details, "; ")
	}
	return s
}

// wireRatio is the bytes on the wire per checkpoint over the raw dirty
// bytes (0 if there were no checkpoints).
func (r *report) wireRatio() float64 {
	if r.DirtyPerCk == 0 {
		return 0
	}
	return r.WirePerCk / r.DirtyPerCk
}

// summary is what repeat prints after the runs: medians (of an even count,
// the mean of the middle two) and maxima over the runs.
type summary struct {
	Runs            int       `json:"runs"`
	Load1           []float64 `json:"load1"` // per run, at its start
	ReleaseP99      []float64 `json:"release_p99_ms"`
	ReleaseP99Med   float64   `json:"release_p99_median_ms"`
	ReleaseP50Med   float64   `json:"release_p50_median_ms"`
	AckP99Med       float64   `json:"ack_p99_median_ms"`
	GapP99Med       float64   `json:"ckpt_gap_p99_median_ms"`
	PauseP99Med     float64   `json:"pause_p99_median_ms"`
	WireRatio       []float64 `json:"wire_dirty_ratio"` // per run: wire bytes / raw dirty bytes per checkpoint
	WireRatioMed    float64   `json:"wire_dirty_ratio_median"`
	Failovers       []float64 `json:"failover_ms"` // runs that took over after the kill
	FailoverMed     float64   `json:"failover_median_ms"`
	FailoverMax     float64   `json:"failover_max_ms"`
	FailoverUnder50 int       `json:"failovers_under_50ms"`
	FalseFailovers  int       `json:"false_failovers"`
	NotVerified     int       `json:"runs_not_verified"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func summarize(reps []report) summary {
	s := summary{Runs: len(reps)}
	var p50, ack, gap, pause []float64
	for _, r := range reps {
		s.Load1 = append(s.Load1, r.Load1)
		if r.Verify != "ok" {
			s.NotVerified++
		}
		if r.FalseFailover {
			s.FalseFailovers++
		}
		if r.Checkpoints > 0 {
			s.ReleaseP99 = append(s.ReleaseP99, r.ReleaseP99)
			p50 = append(p50, r.ReleaseP50)
			ack = append(ack, r.AckP99)
			gap = append(gap, r.GapP99)
			pause = append(pause, r.PauseP99)
			s.WireRatio = append(s.WireRatio, r.wireRatio())
		}
		if r.Epoch > 0 && r.FailoverMs > 0 && !r.FalseFailover {
			s.Failovers = append(s.Failovers, r.FailoverMs)
			s.FailoverMax = max(s.FailoverMax, r.FailoverMs)
			if r.FailoverMs < 50 {
				s.FailoverUnder50++
			}
		}
	}
	s.ReleaseP99Med, s.ReleaseP50Med = median(s.ReleaseP99), median(p50)
	s.AckP99Med, s.GapP99Med, s.PauseP99Med = median(ack), median(gap), median(pause)
	s.FailoverMed = median(s.Failovers)
	s.WireRatioMed = median(s.WireRatio)
	return s
}

func (s *summary) print() {
	list := func(v []float64, prec int) string {
		var b []string
		for _, x := range v {
			b = append(b, strconv.FormatFloat(x, 'f', prec, 64))
		}
		return strings.Join(b, " ")
	}
	ms := func(v []float64) string { return list(v, 1) }
	fmt.Printf("summary of %d runs (load average at each start: %s)\n", s.Runs, list(s.Load1, 2))
	fmt.Printf("  release p99: median %.2f ms (runs: %s); release p50 median %.2f ms\n", s.ReleaseP99Med, ms(s.ReleaseP99), s.ReleaseP50Med)
	fmt.Printf("  ack p99 median %.2f ms, checkpoint gap p99 median %.2f ms, pause p99 median %.3f ms\n", s.AckP99Med, s.GapP99Med, s.PauseP99Med)
	fmt.Printf("  wire bytes / raw dirty bytes per checkpoint: median %.3f (runs: %s)\n", s.WireRatioMed, list(s.WireRatio, 3))
	fmt.Printf("  failover: median %.1f ms, max %.1f ms, %d of %d under 50 ms (runs: %s)\n",
		s.FailoverMed, s.FailoverMax, s.FailoverUnder50, len(s.Failovers), ms(s.Failovers))
	fmt.Printf("  false failovers (a live primary lost): %d of %d runs\n", s.FalseFailovers, s.Runs)
	fmt.Printf("  runs not verified: %d\n", s.NotVerified)
}

// loadAvg is the 1-minute load average (0 if unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
