package ftmirror

import (
	"sync"
	"time"

	"github.com/doppel-ft/doppel/ftmirror/wire"
)

// Stats are the primary's measurements, in fixed-size histograms and
// counters: a long run does not grow them. Methods are safe for concurrent
// use.
type Stats struct {
	mu          sync.Mutex
	pauses      histogram
	wireBytes   meanOf
	dirtyBytes  meanOf
	releaseLat  histogram
	ackLat      histogram
	acks        int
	slowAcks    [][2]float64 // the first maxSlowAcks acks over 10 ms: [index, ms]
	rounds      []int        // brownout rounds of the first sync (at most BrownoutMaxRounds)
	syncTime    time.Duration
	syncBytes   int64
	leaseMisses int
	heldInSync  int
	sinkErrs    int
	lastSinkErr error
	protected   time.Time // when the first complete epoch was acknowledged
	parts       [4]histogram
	lastCkpt    time.Time
	gaps        histogram // between checkpoints
	late        int       // checkpoints that began over half an epoch late
	snapGrown   int       // pauses that had to grow the snapshot
	codec       string    // compression in use
	groups      [3]int    // GROUP frames sent, tried compressed, sent compressed
	groupBytes  [2]int64  // GROUP payload bytes before and after compression
}

func (s *Stats) setCompression(zc *wire.Compressor) {
	s.mu.Lock()
	s.codec = "off"
	if zc != nil {
		s.codec = map[uint8]string{wire.CodecS2: "s2", wire.CodecZstd: "zstd"}[zc.Codec()]
	}
	s.mu.Unlock()
}

// group records one GROUP frame: its payload before and after compression,
// whether compression was tried and whether it was kept.
func (s *Stats) group(raw, sent int, tried, kept bool) {
	s.mu.Lock()
	s.groups[0]++
	if tried {
		s.groups[1]++
	}
	if kept {
		s.groups[2]++
	}
	s.groupBytes[0] += int64(raw)
	s.groupBytes[1] += int64(sent)
	s.mu.Unlock()
}

const maxSlowAcks = 50

// meanOf keeps a running mean.
type meanOf struct {
	sum float64
	n   int
}

func (m *meanOf) add(v int64) { m.sum += float64(v); m.n++ }
func (m *meanOf) mean() float64 {
	if m.n == 0 {
		return 0
	}
	return m.sum / float64(m.n)
}

func (s *Stats) checkpoint(now time.Time, pause time.Duration, wire, dirty int64) {
	s.mu.Lock()
	if !s.lastCkpt.IsZero() {
		s.gaps.add(now.Sub(s.lastCkpt))
	}
	s.lastCkpt = now
	s.pauses.add(pause)
	s.wireBytes.add(wire)
	s.dirtyBytes.add(dirty)
	s.mu.Unlock()
}

// pauseParts records where a pause went: stopping the guest (Guest.Pause:
// for a VM, the vCPUs' exits and whatever it captures there), harvest,
// copying the dirty pages, and the rest (state, output seal, resume).
func (s *Stats) pauseParts(stop, harvest, copying, rest time.Duration) {
	s.mu.Lock()
	s.parts[0].add(stop)
	s.parts[1].add(harvest)
	s.parts[2].add(copying)
	s.parts[3].add(rest)
	s.mu.Unlock()
}

func (s *Stats) released(now time.Time, marks []emitMark) {
	s.mu.Lock()
	for _, m := range marks {
		if s.protected.IsZero() || m.at.Before(s.protected) {
			s.heldInSync++ // emitted before protection began: held for the sync
			continue
		}
		s.releaseLat.add(now.Sub(m.at))
	}
	s.mu.Unlock()
}

func (s *Stats) ack(d time.Duration) {
	s.mu.Lock()
	if d > 10*time.Millisecond && len(s.slowAcks) < maxSlowAcks {
		s.slowAcks = append(s.slowAcks, [2]float64{float64(s.acks), float64(d) / 1e6})
	}
	s.acks++
	s.ackLat.add(d)
	s.mu.Unlock()
}

func (s *Stats) round(pages int) {
	s.mu.Lock()
	if len(s.rounds) < 64 {
		s.rounds = append(s.rounds, pages)
	}
	s.mu.Unlock()
}

func (s *Stats) syncDone(now time.Time, d time.Duration, pages int) {
	s.mu.Lock()
	if s.syncTime == 0 {
		s.syncTime, s.syncBytes = d, int64(pages)*PageSize
		s.protected = now
	}
	s.mu.Unlock()
}

func (s *Stats) lateCheckpoint() {
	s.mu.Lock()
	s.late++
	s.mu.Unlock()
}

func (s *Stats) snapGrownInPause() {
	s.mu.Lock()
	s.snapGrown++
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
	PauseParts       [4][2]float64 `json:"pause_parts_p99_max_ms"` // stop, harvest, copy, rest
	GapP99ms         float64       `json:"ckpt_gap_p99_ms"`
	GapMaxms         float64       `json:"ckpt_gap_max_ms"`
	SlowAcks         [][2]float64  `json:"slow_acks,omitempty"` // [ack index, ms] over 10 ms
	LateCheckpoints  int           `json:"late_checkpoints"`    // began over half an epoch late (forwarded first)
	SnapGrownInPause int           `json:"snap_grown_in_pause"` // pauses that allocated snapshot memory
	LeaseMisses      int           `json:"lease_misses"`
	SinkErrors       int           `json:"sink_errors"`
	Compression      string        `json:"compression"`
	Groups           int           `json:"groups"`            // GROUP frames sent
	GroupsTried      int           `json:"groups_tried"`      // compression tried
	GroupsCompressed int           `json:"groups_compressed"` // sent as GROUPZ
	GroupRawBytes    int64         `json:"group_raw_bytes"`   // GROUP payloads before compression
	GroupWireBytes   int64         `json:"group_wire_bytes"`  // and as sent
}

// Summary computes percentiles over everything recorded so far (from the
// histograms: within about 3% of the exact values; maxima are exact).
func (s *Stats) Summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := Summary{
		SyncSeconds: s.syncTime.Seconds(), SyncBytes: s.syncBytes,
		BrownoutRounds: append([]int(nil), s.rounds...),
		Checkpoints:    int(s.pauses.n), Released: int(s.releaseLat.n),
		HeldInSync: s.heldInSync, LeaseMisses: s.leaseMisses, SinkErrors: s.sinkErrs,
		LateCheckpoints: s.late, SnapGrownInPause: s.snapGrown,
		SlowAcks:    append([][2]float64(nil), s.slowAcks...),
		Compression: s.codec, Groups: s.groups[0], GroupsTried: s.groups[1], GroupsCompressed: s.groups[2],
		GroupRawBytes: s.groupBytes[0], GroupWireBytes: s.groupBytes[1],
	}
	sum.PauseP50ms, sum.PauseP99ms, sum.PauseMaxms = s.pauses.pct()
	sum.ReleaseP50ms, sum.ReleaseP99ms, _ = s.releaseLat.pct()
	sum.AckP50ms, sum.AckP99ms, _ = s.ackLat.pct()
	_, sum.GapP99ms, sum.GapMaxms = s.gaps.pct()
	for i := range s.parts {
		_, sum.PauseParts[i][0], sum.PauseParts[i][1] = s.parts[i].pct()
	}
	sum.WireBytesPerCkpt = s.wireBytes.mean()
	sum.DirtyBytesPerCk = s.dirtyBytes.mean()
	return sum
}
