package selftest

import (
	"runtime"
	"strings"
	"testing"
)

func TestCheckReturned(t *testing.T) {
	const (
		M      = 1 << 20
		total  = 1024 * M
		window = 64 * M
	)
	snap := func(totalAlloc, inuse, idle, released, free uint64) *memSnapshot {
		return &memSnapshot{MemStats: runtime.MemStats{TotalAlloc: totalAlloc, HeapInuse: inuse, HeapIdle: idle, HeapReleased: released}, free: free}
	}
	good := struct{ before, peak, after *memSnapshot }{
		snap(10*M, 2*M, 4*M, 4*M, 900*M),
		snap(900*M, 70*M, 0, 4*M, 780*M),
		snap(1040*M, 2*M, 130*M, 130*M, 899*M),
	}
	tests := []struct {
		name                string
		bareMetal           bool
		before, peak, after *memSnapshot
		wantErr             string
	}{
		{"returned on bare metal", true, good.before, good.peak, good.after, ""},
		{"host ignores MemFree", false, good.before, snap(0, 0, 0, 0, 900*M), snap(1040*M, 2*M, 130*M, 130*M, 0), ""},
		// A host process whose earlier tests left 46M released: the churn
		// reuses those pages, and the released total hardly moves.
		{"churn on pages released before", false, snap(10*M, 2*M, 46*M, 46*M, 0), good.peak, snap(1040*M, 2*M, 50*M, 50*M, 0), ""},
		{"allocated too little", false, good.before, good.peak, snap(500*M, 2*M, 130*M, 130*M, 0), "runtime counted"},
		{"heap still in use", false, good.before, good.peak, snap(1040*M, 40*M, 130*M, 130*M, 0), "heap in use grew"},
		{"idle heap kept", false, good.before, good.peak, snap(1040*M, 2*M, 130*M, 10*M, 0), "FreeOSMemory kept"},
		{"layer never counted the frames", true, good.before, snap(900*M, 70*M, 0, 4*M, 890*M), good.after, "MemFree hardly fell"},
		{"layer kept the frames", true, good.before, good.peak, snap(1040*M, 2*M, 130*M, 130*M, 800*M), "MemFree did not recover"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkReturned(tt.bareMetal, total, window, tt.before, tt.peak, tt.after)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("checkReturned = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
