package qemutest

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// lanTrace records the TCP segments of one port that cross the outside
// LAN's hub, so a failover's gap can be read segment by segment: whether
// the guest's first segments after the takeover are new data, a
// retransmission after its timer, or replies to the outside's
// acknowledgements.
type lanTrace struct {
	port uint16
	mu   sync.Mutex
	segs []tcpSeg // the newest last; bounded by maxTraceSegs
}

const maxTraceSegs = 4096

// tcpSeg is one TCP segment seen on the hub.
type tcpSeg struct {
	at       time.Time
	fromHost bool // the outside host sent it (else a machine's port)
	seq, ack uint32
	flags    uint8
	payload  int
}

// observe records f if it is an IPv4 TCP segment to or from the port.
func (tr *lanTrace) observe(fromHost bool, f []byte) {
	const eth = 14
	if len(f) < eth+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return
	}
	ip := f[eth:]
	ihl := int(ip[0]&0xf) * 4
	if ip[9] != 6 || ihl < 20 || len(ip) < ihl+20 {
		return
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	tcp := ip[ihl:]
	src, dst := binary.BigEndian.Uint16(tcp[0:]), binary.BigEndian.Uint16(tcp[2:])
	if src != tr.port && dst != tr.port {
		return
	}
	doff := int(tcp[12]>>4) * 4
	s := tcpSeg{at: time.Now(), fromHost: fromHost, seq: binary.BigEndian.Uint32(tcp[4:]),
		ack: binary.BigEndian.Uint32(tcp[8:]), flags: tcp[13], payload: max(total-ihl-doff, 0)}
	tr.mu.Lock()
	if len(tr.segs) == maxTraceSegs {
		tr.segs = append(tr.segs[:0], tr.segs[maxTraceSegs/2:]...)
	}
	tr.segs = append(tr.segs, s)
	tr.mu.Unlock()
}

// around describes the segments from just before t0 (the last guest
// data segment before it and what followed) up to the guest's n-th data
// segment after t0, with times relative to t0. A guest data segment
// whose sequence number is below the highest seen before is marked
// "retransmitted".
func (tr *lanTrace) around(t0 time.Time, n int) string {
	tr.mu.Lock()
	segs := append([]tcpSeg(nil), tr.segs...)
	tr.mu.Unlock()
	first := 0
	for i, s := range segs {
		if s.at.Before(t0) && !s.fromHost && s.payload > 0 {
			first = i
		}
	}
	var b strings.Builder
	var top uint32
	topSet := false
	for _, s := range segs[:first] {
		if !s.fromHost && s.payload > 0 {
			top, topSet = s.seq+uint32(s.payload), true
		}
	}
	after := 0
	for _, s := range segs[first:] {
		who := "guest"
		if s.fromHost {
			who = "host "
		}
		note := ""
		if !s.fromHost && s.payload > 0 {
			if topSet && int32(s.seq-top) < 0 {
				note = " retransmitted"
			}
			if end := s.seq + uint32(s.payload); !topSet || int32(end-top) > 0 {
				top, topSet = end, true
			}
			if s.at.After(t0) {
				after++
			}
		}
		fmt.Fprintf(&b, "\n  %+8.1f ms %s seq %d ack %d len %d flags %#02x%s", float64(s.at.Sub(t0))/1e6, who, s.seq, s.ack, s.payload, s.flags, note)
		if after >= n {
			break
		}
	}
	return b.String()
}

// tcpFrame builds an Ethernet/IPv4/TCP frame for the trace's tests.
func tcpFrame(src, dst uint16, seq, ack uint32, payload int) []byte {
	f := make([]byte, 14+20+20+payload)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[9] = 0x45, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(40+payload))
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], src)
	binary.BigEndian.PutUint16(tcp[2:], dst)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12], tcp[13] = 5<<4, 0x18
	return f
}

func TestLANTraceAround(t *testing.T) {
	tr := &lanTrace{port: 7000}
	tr.observe(false, tcpFrame(7000, 40000, 100, 1, 10)) // guest data 100..110
	tr.observe(true, tcpFrame(40000, 7000, 1, 110, 0))   // host ack
	tr.observe(false, tcpFrame(7000, 40000, 110, 1, 10)) // the last before t0
	tr.observe(false, tcpFrame(7001, 40000, 1, 1, 10))   // another port: ignored
	t0 := time.Now()
	time.Sleep(time.Millisecond)
	tr.observe(false, tcpFrame(7000, 40000, 110, 1, 10)) // again: retransmitted
	tr.observe(false, tcpFrame(7000, 40000, 120, 1, 10)) // new
	tr.observe(false, tcpFrame(7000, 40000, 130, 1, 10)) // beyond n
	got := tr.around(t0, 2)
	lines := strings.Split(strings.TrimPrefix(got, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:%s", len(lines), got)
	}
	for i, want := range []string{"guest seq 110 ack 1 len 10 flags 0x18", "retransmitted", "seq 120"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q lacks %q", i, lines[i], want)
		}
	}
	if strings.Contains(lines[2], "retransmitted") {
		t.Errorf("new data marked retransmitted: %q", lines[2])
	}
}
