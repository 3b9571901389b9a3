package ftmirror

import (
	"sort"
	"sync"
	"time"
)

// Stats are the primary's measurements. Methods are safe for concurrent use.
type Stats struct {
	mu          sync.Mutex
	pauses      []time.Duration
	wireBytes   []int64
	dirtyBytes  []int64
	releaseLat  []time.Duration
	ackLat      []time.Duration
	rounds      []int
	syncTime    time.Duration
	syncBytes   int64
	leaseMisses int
	heldInSync  int
	sinkErrs    int
	lastSinkErr error
	protected   time.Time // when the first complete epoch was acknowledged
	parts       [3][]time.Duration
	lastCkpt    time.Time
	gaps        []time.Duration // between checkpoints
}

func (s *Stats) checkpoint(pause time.Duration, wire, dirty int64) {
	s.mu.Lock()
	now := time.Now()
	if !s.lastCkpt.IsZero() {
		s.gaps = append(s.gaps, now.Sub(s.lastCkpt))
	}
	s.lastCkpt = now
	s.pauses = append(s.pauses, pause)
	s.wireBytes = append(s.wireBytes, wire)
	s.dirtyBytes = append(s.dirtyBytes, dirty)
	s.mu.Unlock()
}

// pauseParts records where a pause went: harvest, copying the dirty pages,
// and the rest (state, output seal, resume).
func (s *Stats) pauseParts(harvest, copying, rest time.Duration) {
	s.mu.Lock()
	s.parts[0] = append(s.parts[0], harvest)
	s.parts[1] = append(s.parts[1], copying)
	s.parts[2] = append(s.parts[2], rest)
	s.mu.Unlock()
}

func (s *Stats) released(now time.Time, marks []emitMark) {
	s.mu.Lock()
	for _, m := range marks {
		if s.protected.IsZero() || m.at.Before(s.protected) {
			s.heldInSync++ // emitted before protection began: held for the sync
			continue
		}
		s.releaseLat = append(s.releaseLat, now.Sub(m.at))
	}
	s.mu.Unlock()
}

func (s *Stats) ack(d time.Duration) {
	s.mu.Lock()
	s.ackLat = append(s.ackLat, d)
	s.mu.Unlock()
}

func (s *Stats) round(pages int) {
	s.mu.Lock()
	s.rounds = append(s.rounds, pages)
	s.mu.Unlock()
}

func (s *Stats) syncDone(d time.Duration, pages int) {
	s.mu.Lock()
	if s.syncTime == 0 {
		s.syncTime, s.syncBytes = d, int64(pages)*PageSize
		s.protected = time.Now()
	}
	s.mu.Unlock()
}

func (s *Stats) leaseMiss() {
	s.mu.Lock()
	s.leaseMisses++
	s.mu.Unlock()
}

func (s *Stats) sinkError(err error) {
	s.mu.Lock()
	s.sinkErrs++
	s.lastSinkErr = err
	s.mu.Unlock()
}

// Summary is a snapshot of Stats.
type Summary struct {
	SyncSeconds      float64       `json:"sync_s"`
	SyncBytes        int64         `json:"sync_bytes"`
	BrownoutRounds   []int         `json:"brownout_round_pages"`
	Checkpoints      int           `json:"checkpoints"`
	PauseP50ms       float64       `json:"pause_p50_ms"`
	PauseP99ms       float64       `json:"pause_p99_ms"`
	PauseMaxms       float64       `json:"pause_max_ms"`
	WireBytesPerCkpt float64       `json:"wire_bytes_per_ckpt"`
	DirtyBytesPerCk  float64       `json:"dirty_bytes_per_ckpt"`
	ReleaseP50ms     float64       `json:"release_p50_ms"`
	ReleaseP99ms     float64       `json:"release_p99_ms"`
	AckP50ms         float64       `json:"ack_p50_ms"`
	AckP99ms         float64       `json:"ack_p99_ms"`
	Released         int           `json:"released_outputs"`
	HeldInSync       int           `json:"outputs_held_for_sync"`
	PauseParts       [3][2]float64 `json:"pause_parts_p99_max_ms"` // harvest, copy, rest
	GapP99ms         float64       `json:"ckpt_gap_p99_ms"`
	GapMaxms         float64       `json:"ckpt_gap_max_ms"`
	SlowAcks         [][2]float64  `json:"slow_acks,omitempty"` // [ack index, ms] over 10 ms
	LeaseMisses      int           `json:"lease_misses"`
	SinkErrors       int           `json:"sink_errors"`
}

// Summary computes percentiles over everything recorded so far.
func (s *Stats) Summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := Summary{
		SyncSeconds: s.syncTime.Seconds(), SyncBytes: s.syncBytes,
		BrownoutRounds: append([]int(nil), s.rounds...),
		Checkpoints:    len(s.pauses), Released: len(s.releaseLat),
		HeldInSync: s.heldInSync, LeaseMisses: s.leaseMisses, SinkErrors: s.sinkErrs,
	}
	sum.PauseP50ms, sum.PauseP99ms, sum.PauseMaxms = pct(s.pauses)
	sum.ReleaseP50ms, sum.ReleaseP99ms, _ = pct(s.releaseLat)
	sum.AckP50ms, sum.AckP99ms, _ = pct(s.ackLat)
	_, sum.GapP99ms, sum.GapMaxms = pct(s.gaps)
	for i, d := range s.ackLat {
		if d > 10*time.Millisecond && len(sum.SlowAcks) < 50 {
			sum.SlowAcks = append(sum.SlowAcks, [2]float64{float64(i), float64(d) / 1e6})
		}
	}
	for i := range s.parts {
		_, sum.PauseParts[i][0], sum.PauseParts[i][1] = pct(s.parts[i])
	}
	sum.WireBytesPerCkpt = mean(s.wireBytes)
	sum.DirtyBytesPerCk = mean(s.dirtyBytes)
	return sum
}

func pct(d []time.Duration) (p50, p99, max float64) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	c := append([]time.Duration(nil), d...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	ms := func(x time.Duration) float64 { return float64(x) / 1e6 }
	at := func(q float64) time.Duration { return c[min(len(c)-1, int(q*float64(len(c))))] }
	return ms(at(0.50)), ms(at(0.99)), ms(c[len(c)-1])
}

func mean(v []int64) float64 {
	if len(v) == 0 {
		return 0
	}
	var t int64
	for _, x := range v {
		t += x
	}
	return float64(t) / float64(len(v))
}
