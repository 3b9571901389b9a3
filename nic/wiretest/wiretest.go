// Package wiretest exchanges test frames between two doppel instances
// over any nic.NIC: one side serves (answers probes and echo requests,
// counts and checks data frames), the other pings (round trips with
// content checks) and blasts (one-way data at full speed, measured by the
// server). The kernel runs it from a boot flag or the shell's nic command;
// the QEMU and Bochs tests assert on the lines it prints.
//
// Frames use EtherType 0x88B5 (IEEE 802 local experimental) to the
// broadcast address; the payload is
//
//	"DPNT" | kind (1 byte) | seq (4, big endian) | total (4) | pattern
//
// where pattern byte i is byte(seq*7 + i), so a receiver checks every
// byte of every frame.
package wiretest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/doppel-ft/doppel/nic"
)

// EtherType of the test frames.
const EtherType = 0x88B5

// Frame kinds.
const (
	kindProbe   = 1 // initiator -> server: are you there?
	kindReady   = 2 // server -> initiator
	kindData    = 3 // one-way payload
	kindDone    = 4 // end of a blast: total says how many were sent
	kindEchoReq = 5
	kindEchoRep = 6
	kindReport  = 7 // server -> initiator: total = data frames received
)

const (
	hdrLen    = nic.HeaderLen + 4 + 1 + 4 + 4
	magic     = "DPNT"
	minLen    = 60 // Ethernet minimum without FCS
	probeTick = 50 * time.Millisecond
)

var broadcast = nic.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// build makes a test frame of size bytes (at least hdrLen).
func build(src nic.MAC, kind byte, seq, total uint32, size int) []byte {
	if size < minLen {
		size = minLen
	}
	f := make([]byte, size)
	copy(f, broadcast[:])
	copy(f[6:], src[:])
	binary.BigEndian.PutUint16(f[12:], EtherType)
	copy(f[14:], magic)
	f[18] = kind
	binary.BigEndian.PutUint32(f[19:], seq)
	binary.BigEndian.PutUint32(f[23:], total)
	for i := hdrLen; i < size; i++ {
		f[i] = byte(seq*7 + uint32(i))
	}
	return f
}

type parsed struct {
	kind       byte
	seq, total uint32
	intact     bool // every pattern byte as expected
}

// parse decodes a test frame; ok is false for any other frame.
func parse(f []byte) (p parsed, ok bool) {
	if len(f) < hdrLen || binary.BigEndian.Uint16(f[12:]) != EtherType || string(f[14:18]) != magic {
		return p, false
	}
	p = parsed{kind: f[18], seq: binary.BigEndian.Uint32(f[19:]), total: binary.BigEndian.Uint32(f[23:]), intact: true}
	for i := hdrLen; i < len(f); i++ {
		if f[i] != byte(p.seq*7+uint32(i)) {
			p.intact = false
			break
		}
	}
	return p, true
}

// ServeResult is what a server saw of one blast.
type ServeResult struct {
	Frames, Bytes uint64 // intact data frames
	Corrupt       uint64 // data frames with a wrong byte
	Sent          uint32 // what the initiator's done frame said it sent
	Elapsed       time.Duration
}

// Lost returns how many data frames never arrived.
func (r ServeResult) Lost() int64 { return int64(r.Sent) - int64(r.Frames+r.Corrupt) }

func (r ServeResult) String() string {
	s := r.Elapsed.Seconds()
	if s <= 0 {
		s = 1e-9
	}
	return fmt.Sprintf("received %d of %d data frames (%d corrupt, %d lost) %d bytes in %.3f s: %.0f frames/s %.2f MB/s",
		r.Frames, r.Sent, r.Corrupt, r.Lost(), r.Bytes, r.Elapsed.Seconds(), float64(r.Frames)/s, float64(r.Bytes)/s/1e6)
}

// Serve answers probes and echo requests and counts data frames until ctx
// is done. After each blast's done frame it calls report with the result
// and tells the initiator how many frames arrived.
func Serve(ctx context.Context, n nic.NIC, report func(ServeResult)) error {
	var cur ServeResult
	var first, last time.Time
	lastReport := -1 // data frames of the last reported blast
	for {
		f, err := n.Receive(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return err
		}
		p, ok := parse(f)
		if !ok {
			continue
		}
		switch p.kind {
		case kindProbe:
			reply(ctx, n, build(n.MAC(), kindReady, p.seq, 0, minLen))
		case kindEchoReq:
			echo := append([]byte(nil), f...)
			echo[18] = kindEchoRep
			reply(ctx, n, echo)
		case kindData:
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			last = now
			if p.intact {
				cur.Frames++
				cur.Bytes += uint64(len(f))
			} else {
				cur.Corrupt++
			}
		case kindDone:
			if first.IsZero() && lastReport >= 0 {
				// A repeated done: the report was lost; send it again.
				reply(ctx, n, build(n.MAC(), kindReport, 0, uint32(lastReport), minLen))
				continue
			}
			cur.Sent = p.total
			cur.Elapsed = last.Sub(first)
			report(cur)
			lastReport = int(cur.Frames)
			reply(ctx, n, build(n.MAC(), kindReport, 0, uint32(cur.Frames), minLen))
			cur, first, last = ServeResult{}, time.Time{}, time.Time{}
		}
	}
}

func reply(ctx context.Context, n nic.NIC, f []byte) {
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	nic.TransmitWait(c, n, f)
}

// Handshake probes until the server answers.
func Handshake(ctx context.Context, n nic.NIC) error {
	for seq := uint32(1); ; seq++ {
		if err := nic.TransmitWait(ctx, n, build(n.MAC(), kindProbe, seq, 0, minLen)); err != nil && !errors.Is(err, nic.ErrLinkDown) {
			return fmt.Errorf("wiretest: probe: %w", err)
		}
		if _, err := await(ctx, n, kindReady, probeTick); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("wiretest: no answer to probes: %w", ctx.Err())
		}
	}
}

// await returns the next test frame of kind within d.
func await(ctx context.Context, n nic.NIC, kind byte, d time.Duration) (parsed, error) {
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		f, err := n.Receive(c)
		if err != nil {
			return parsed{}, err
		}
		if p, ok := parse(f); ok && p.kind == kind {
			return p, nil
		}
	}
}

// PingResult is the outcome of Ping.
type PingResult struct {
	Sent, Replies, Corrupt int
	RTT                    time.Duration // median round trip
}

func (r PingResult) String() string {
	return fmt.Sprintf("ping %d frames: %d replies, %d corrupt, median rtt %v", r.Sent, r.Replies, r.Corrupt, r.RTT)
}

// Ping sends count echo requests of size bytes one at a time and checks
// each reply's every byte.
func Ping(ctx context.Context, n nic.NIC, count, size int) (PingResult, error) {
	r := PingResult{}
	var rtts []time.Duration
	for i := 0; i < count; i++ {
		seq := uint32(i + 1)
		start := time.Now()
		if err := nic.TransmitWait(ctx, n, build(n.MAC(), kindEchoReq, seq, 0, size)); err != nil {
			return r, fmt.Errorf("wiretest: echo request %d: %w", i, err)
		}
		r.Sent++
		for {
			p, err := await(ctx, n, kindEchoRep, 2*time.Second)
			if err != nil {
				break // lost: go on with the next
			}
			if p.seq != seq {
				continue // a late reply to an earlier request
			}
			r.Replies++
			if !p.intact {
				r.Corrupt++
			}
			rtts = append(rtts, time.Since(start))
			break
		}
	}
	if len(rtts) > 0 {
		sortDurations(rtts)
		r.RTT = rtts[len(rtts)/2]
	}
	return r, nil
}

func sortDurations(d []time.Duration) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j] < d[j-1]; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

// BlastResult is the sender's side of a blast.
type BlastResult struct {
	Sent         int
	Bytes        uint64
	Elapsed      time.Duration
	QueueFull    uint64 // ErrQueueFull back-offs during the blast
	Acknowledged int    // data frames the server reported (-1: no report)
}

func (r BlastResult) String() string {
	s := r.Elapsed.Seconds()
	if s <= 0 {
		s = 1e-9
	}
	return fmt.Sprintf("blast sent %d frames %d bytes in %.3f s: %.0f frames/s %.2f MB/s, %d queue-full back-offs, server got %d",
		r.Sent, r.Bytes, r.Elapsed.Seconds(), float64(r.Sent)/s, float64(r.Bytes)/s/1e6, r.QueueFull, r.Acknowledged)
}

// Blast sends count data frames of size bytes as fast as the ring takes
// them, then done frames until the server reports what it received.
func Blast(ctx context.Context, n nic.NIC, count, size int) (BlastResult, error) {
	r := BlastResult{Acknowledged: -1}
	full0 := n.Counters().TxQueueFull
	start := time.Now()
	for i := 0; i < count; i++ {
		f := build(n.MAC(), kindData, uint32(i), uint32(count), size)
		if err := nic.TransmitWait(ctx, n, f); err != nil {
			return r, fmt.Errorf("wiretest: data frame %d: %w", i, err)
		}
		r.Sent++
		r.Bytes += uint64(len(f))
	}
	r.Elapsed = time.Since(start)
	r.QueueFull = n.Counters().TxQueueFull - full0
	for try := 0; try < 20 && r.Acknowledged < 0; try++ {
		if err := nic.TransmitWait(ctx, n, build(n.MAC(), kindDone, 0, uint32(count), minLen)); err != nil {
			return r, err
		}
		if p, err := await(ctx, n, kindReport, 500*time.Millisecond); err == nil {
			r.Acknowledged = int(p.total)
		}
	}
	return r, nil
}
