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

// A timeout resends the first unacknowledged frame (the rest waits for
// the verdict of F-RTO: TestSpuriousTimeout), backs the timer off, and a
// second loss in the same window does not halve again.
func TestTimeoutRecovery(t *testing.T) {
	now := time.Now()
	s := &sender{cwnd: 200, ssthresh: 1000, peerMax: 4096, una: 10, nxt: 400, rto: 20 * time.Millisecond}
	s.timeout(now)
	if s.rtxNext != 10 || s.rtxEnd != 11 || s.frtoEnd != 400 || s.rto != 40*time.Millisecond || !s.rtoAt.Equal(now.Add(40*time.Millisecond)) {
		t.Fatalf("after a timeout: resend [%d,%d) (flight to %d), rto %v at %v", s.rtxNext, s.rtxEnd, s.frtoEnd, s.rto, s.rtoAt.Sub(now))
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

// After a timeout the first acknowledgement that makes progress decides
// what else is resent (F-RTO, RFC 5682): one covering a frame of the
// flight that was never resent shows the timeout spurious (nothing more
// is resent, the window is restored); one covering only the resent frame
// shows the flight lost (the rest is resent in order); a second timeout
// without either resends the whole flight.
func TestSpuriousTimeout(t *testing.T) {
	for _, c := range []struct {
		name         string
		ack, sack    uint64 // the acknowledgement after the timeout; 0 ack: none
		again        bool   // a second timeout instead
		spurious     bool
		rtxNext      uint64
		rtxEnd       uint64
		cwnd         uint64
		stillWaiting bool
	}{
		{"the flight arrived: ack past the resent frame", 50, 0, false, true, 50, 50, 200, false},
		{"the flight arrived: SACK of an original", 10, 1 << 5, false, true, 11, 11, 200, false},
		{"only the resent frame acknowledged", 11, 0, false, false, 11, 400, 100, false},
		{"no progress: a duplicate ack", 10, 0, false, false, 11, 11, 100, true},
		{"a second timeout", 0, 0, true, false, 10, 400, initCwnd, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := &Conn{epoch: time.Now()}
			s := &conn.snd
			s.init(1024, 1500, Config{})
			s.una, s.nxt, s.tail, s.highSACK = 10, 400, 400, 10
			s.cwnd, s.ssthresh, s.peerMax, s.peerRight = 200, 1000, 4096, 4096
			now := time.Now()
			s.timeout(now)
			s.rtxNext++ // the goroutine resent frame 10
			s.flags[10] |= slotRetransmitted
			switch {
			case c.again:
				s.timeout(now)
			default:
				var clk clock
				if ok, _ := conn.onAck(&header{kind: kindAck, ack: c.ack, sack: c.sack, window: 4096}, &clk); !ok {
					t.Fatal("acknowledgement refused")
				}
			}
			if got := conn.st.SpuriousTimeouts == 1; got != c.spurious {
				t.Errorf("spurious timeouts %d, want spurious %v", conn.st.SpuriousTimeouts, c.spurious)
			}
			if s.rtxNext != c.rtxNext || s.rtxEnd != c.rtxEnd || s.cwnd != c.cwnd {
				t.Errorf("resend [%d,%d), cwnd %d; want [%d,%d), %d", s.rtxNext, s.rtxEnd, s.cwnd, c.rtxNext, c.rtxEnd, c.cwnd)
			}
			if (s.frtoEnd != 0) != c.stillWaiting {
				t.Errorf("frtoEnd %d, still waiting %v", s.frtoEnd, c.stillWaiting)
			}
		})
	}
}

// A SACK bitmap shifted past a wide hole marks the frames it shows
// received, and the hole below them is resent without a timeout.
func TestSACKBeyondHole(t *testing.T) {
	conn := &Conn{epoch: time.Now().Add(-time.Second)}
	s := &conn.snd
	s.init(1024, 1500, Config{})
	s.una, s.nxt, s.tail, s.highSACK = 10, 400, 400, 10
	s.cwnd, s.ssthresh, s.peerMax, s.peerRight = 500, 1000, 4096, 4096
	s.srtt = 5 * time.Millisecond
	for q := s.una; q < s.nxt; q++ {
		s.sentAt[q%s.n] = time.Duration(q) * time.Microsecond // all sent long ago
	}
	var clk clock
	if ok, _ := conn.onAck(&header{kind: kindAck, ack: 10, shift: 2, sack: 0b111, window: 4096}, &clk); !ok {
		t.Fatal("acknowledgement refused")
	}
	for q := uint64(139); q < 142; q++ {
		if s.flags[q%s.n]&slotSACKed == 0 {
			t.Errorf("frame %d not marked SACKed", q)
		}
	}
	if s.sacked != 3 || s.highSACK != 142 {
		t.Fatalf("sacked %d, highSACK %d; want 3, 142", s.sacked, s.highSACK)
	}
	var b batch
	conn.detectLoss(time.Now(), &b)
	if len(b.frames) != maxBurst || b.frames[0].seq != 10 || b.frames[maxBurst-1].seq != 10+maxBurst-1 || !s.fastCheck {
		t.Fatalf("resent %d frames from %d (more to come %v); want %d from 10", len(b.frames), b.frames[0].seq, s.fastCheck, maxBurst)
	}
}

// The receiver's SACK reports alternate between the block of the first
// frame held beyond the ack and, in turn, the blocks held further on.
func TestSACKRotation(t *testing.T) {
	var r receiver
	r.init(1024)
	r.next = 3
	for _, q := range []uint64{103, 104, 300, 700} {
		r.slots[q%r.n] = []byte{1}
		r.ooo++
	}
	type report struct {
		shift uint8
		sack  uint64
	}
	first := report{1, 3 << 35} // frames 103 and 104: block 68-131
	want := []report{
		first,
		{4, 1 << 40}, // frame 300: block 260-323
		first,
		{10, 1 << 56}, // frame 700: block 644-707
		first,
		first, // nothing further on: back to the first block
		first,
		{4, 1 << 40},
	}
	for i, w := range want {
		sack, shift := r.sack()
		if (report{shift, sack}) != w {
			t.Errorf("report %d: shift %d sack %#x; want shift %d sack %#x", i, shift, sack, w.shift, w.sack)
		}
	}
}
