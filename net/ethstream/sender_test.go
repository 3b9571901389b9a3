package ethstream

import (
	"testing"
	"time"
)

// The congestion window's growth and its responses to a loss and a
// timeout.
func TestCongestionWindow(t *testing.T) {
	for _, c := range []struct {
		name                   string
		cwnd, ssthresh, peer   uint64
		do                     func(s *sender)
		wantCwnd, wantSSThresh uint64
	}{
		{"slow start", 40, 1000, 4096, func(s *sender) { s.grow(10) }, 50, 1000},
		// caStep more frames per window, less the window's own growth.
		{"avoidance: a window", 100, 50, 4096, func(s *sender) { s.grow(100) }, 107, 50},
		{"avoidance: half a window", 100, 50, 4096, func(s *sender) { s.grow(50) }, 103, 50},
		{"capped by the peer's window", 300, 1000, 310, func(s *sender) { s.grow(64) }, 310, 1000},
		{"loss halves", 300, 1000, 4096, func(s *sender) { s.lossEvent() }, 150, 150},
		{"timeout halves", 300, 1000, 4096, func(s *sender) { s.timeout(time.Now()) }, 150, 150},
		{"timeout keeps initCwnd", 40, 1000, 4096, func(s *sender) { s.timeout(time.Now()) }, initCwnd, 20},
		{"timeout, a small peer window", 40, 1000, 16, func(s *sender) { s.timeout(time.Now()) }, 16, 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &sender{cwnd: c.cwnd, ssthresh: c.ssthresh, peerMax: c.peer, una: 10, nxt: 400, rto: 20 * time.Millisecond}
			c.do(s)
			if s.cwnd != c.wantCwnd || s.ssthresh != c.wantSSThresh {
				t.Errorf("cwnd %d, ssthresh %d; want %d, %d", s.cwnd, s.ssthresh, c.wantCwnd, c.wantSSThresh)
			}
		})
	}
}

// The timeout follows the round trip above maxRTO: a path whose frames
// queue for longer than maxRTO must not time out every flight.
func TestRTOAboveMaxRTO(t *testing.T) {
	for _, c := range []struct {
		name     string
		samples  []time.Duration
		answered bool // the peer has acknowledged frames, all of them resent
		timeouts int
		want     time.Duration
	}{
		{"short round trips", []time.Duration{time.Millisecond, time.Millisecond}, false, 0, minRTO},
		{"backoff capped at maxRTO", []time.Duration{time.Millisecond}, false, 8, maxRTO},
		// srtt 400 ms, rttvar 150 ms: RFC 6298's 1 s, capped at 800 ms.
		{"long round trips", []time.Duration{400 * time.Millisecond, 400 * time.Millisecond}, false, 0, 800 * time.Millisecond},
		{"backoff capped at twice the round trip", []time.Duration{400 * time.Millisecond}, false, 8, 800 * time.Millisecond},
		{"no sample, nothing acknowledged: maxRTO", nil, false, 8, maxRTO},
		{"no sample, the peer acknowledges resent frames", nil, true, 8, unsampledMaxRTO},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := &Conn{}
			conn.snd.rto = initRTO
			if c.answered {
				conn.snd.una, conn.snd.nxt = 40, 80
			}
			for _, r := range c.samples {
				conn.sampleRTT(r)
			}
			for i := 0; i < c.timeouts; i++ {
				conn.snd.timeout(time.Now())
			}
			if got := conn.snd.rto; got != c.want {
				t.Errorf("rto %v (srtt %v, rttvar %v), want %v", got, conn.snd.srtt, conn.snd.rttvar, c.want)
			}
			if conn.snd.rto < conn.snd.srtt {
				t.Errorf("rto %v below the smoothed round trip %v", conn.snd.rto, conn.snd.srtt)
			}
		})
	}
}

// A timeout resends everything from the first unacknowledged frame,
// backs the timer off, and a second loss in the same window does not
// halve again.
func TestTimeoutRecovery(t *testing.T) {
	now := time.Now()
	s := &sender{cwnd: 200, ssthresh: 1000, peerMax: 4096, una: 10, nxt: 400, rto: 20 * time.Millisecond}
	s.timeout(now)
	if s.rtxNext != 10 || s.rtxEnd != 400 || s.rto != 40*time.Millisecond || !s.rtoAt.Equal(now.Add(40*time.Millisecond)) {
		t.Fatalf("after a timeout: resend [%d,%d), rto %v at %v", s.rtxNext, s.rtxEnd, s.rto, s.rtoAt.Sub(now))
	}
	s.lossEvent()
	if s.cwnd != 100 {
		t.Errorf("a loss in the same window halved again: cwnd %d", s.cwnd)
	}
	s.grow(50)
	if s.cwnd != 100 {
		t.Errorf("the window grew during recovery: %d", s.cwnd)
	}
	// A second timeout before the first's flight is acknowledged: the
	// path is in trouble, back to initCwnd.
	s.una = 200
	s.timeout(now)
	if s.cwnd != initCwnd {
		t.Errorf("a second timeout in a row: cwnd %d, want %d", s.cwnd, initCwnd)
	}
	// Once that flight is acknowledged, a timeout halves again.
	s.una, s.nxt, s.cwnd = 400, 800, 300
	s.timeout(now)
	if s.cwnd != 150 {
		t.Errorf("a timeout after recovery: cwnd %d, want 150", s.cwnd)
	}
}
