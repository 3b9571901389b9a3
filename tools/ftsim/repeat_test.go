package main

import (
	"reflect"
	"testing"
)

// TestSummarize checks the figures repeat prints: medians of even and odd
// counts, failovers counted only for takeovers after the kill, false
// failovers and unverified runs counted.
func TestSummarize(t *testing.T) {
	ok := func(p99, fo float64) report {
		return report{Verify: "ok", Checkpoints: 100, ReleaseP99: p99, FailoverMs: fo, Epoch: 9}
	}
	falseFO := ok(11, 3)
	falseFO.FalseFailover = true
	bad := ok(30, 70)
	bad.Verify = "mismatch"
	noTakeover := ok(12, 0)
	noTakeover.Epoch = 0
	tests := []struct {
		name string
		reps []report
		got  func(s summary) []any // the figures under test
		want []any
	}{
		{"odd", []report{ok(14, 10), ok(12, 6), ok(40, 501)},
			func(s summary) []any { return []any{s.ReleaseP99Med, s.FailoverMed, s.FailoverMax, s.FailoverUnder50} },
			[]any{14.0, 10.0, 501.0, 2}},
		{"even", []report{ok(14, 10), ok(12, 6), ok(40, 20), ok(10, 8)},
			func(s summary) []any { return []any{s.ReleaseP99Med, s.FailoverMed} },
			[]any{13.0, 9.0}},
		{"counted", []report{falseFO, bad, noTakeover, ok(13, 5)},
			func(s summary) []any {
				return []any{s.FalseFailovers, s.NotVerified, len(s.Failovers), s.FailoverMax, s.Runs}
			},
			[]any{1, 1, 2, 70.0, 4}},
		{"none", nil,
			func(s summary) []any { return []any{s.ReleaseP99Med, s.FailoverMed, s.Runs} },
			[]any{0.0, 0.0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.got(summarize(tt.reps)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("summarize = %v, want %v", got, tt.want)
			}
		})
	}
}
