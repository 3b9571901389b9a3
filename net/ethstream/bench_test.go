package ethstream

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/net/linktest"
	"github.com/doppel-ft/doppel/nic"
)

// probeType is the EtherType of the raw frames the benchmark blasts to
// measure the wire alone (link.EtherTypeProbe).
const probeType = 0x88b5

// rawCounter counts probe frames received: bytes and the first and
// last arrival.
type rawCounter struct {
	mu          sync.Mutex
	frames      int
	bytes       int
	first, last time.Time
}

func (r *rawCounter) count(n int) {
	now := time.Now()
	r.mu.Lock()
	if r.frames == 0 {
		r.first = now
	}
	r.frames++
	r.bytes += n
	r.last = now
	r.mu.Unlock()
}

func (r *rawCounter) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frames
}

// rate is the received rate between the first and the last frame.
func (r *rawCounter) rate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.last.Sub(r.first).Seconds()
	if r.frames < 2 || d <= 0 {
		return 0
	}
	return float64(r.bytes) / d
}

// countWire counts the frames and the doorbells (calls with more=false)
// of a Wire: under an emulator each doorbell is an exit.
type countWire struct {
	endWire
	frames, bells atomic.Uint64
}

func (w *countWire) SendFrame(f []byte, more bool) error {
	w.frames.Add(1)
	if !more {
		w.bells.Add(1)
	}
	return w.endWire.SendFrame(f, more)
}

// benchPair is a newPair whose receive loops also count probe frames
// (as the link endpoint does), so the raw wire and the stream are
// measured over the same wire.
func benchPair(b *testing.B, lc linktest.Config) (a, bb *side, wa, wb *countWire, raw *rawCounter) {
	ea, eb := linktest.Pair(lc)
	wa, wb = &countWire{endWire: endWire{ea}}, &countWire{endWire: endWire{eb}}
	a, bb = &side{end: ea, d: NewDemux(wa)}, &side{end: eb, d: NewDemux(wb)}
	raw = &rawCounter{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range []*side{a, bb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				f, err := s.end.Receive(ctx)
				if err != nil {
					return
				}
				if binary.BigEndian.Uint16(f[12:]) == probeType {
					raw.count(len(f))
					continue
				}
				s.d.Deliver(f)
			}
		}()
	}
	b.Cleanup(func() {
		a.c.Close()
		bb.c.Close()
		cancel()
		ea.Close()
		wg.Wait()
	})
	cfg := Config{Session: testSession}
	ca, cb := cfg, cfg
	ca.Local, ca.Peer = ea.MAC(), eb.MAC()
	cb.Local, cb.Peer = eb.MAC(), ea.MAC()
	var err error
	if a.c, err = a.d.Open(ca); err != nil {
		b.Fatal(err)
	}
	if bb.c, err = bb.d.Open(cb); err != nil {
		b.Fatal(err)
	}
	return a, bb, wa, wb, raw
}

// blast sends n bytes of full-size probe frames from e as fast as its
// ring takes them (waiting out a full ring as the stream's Wire does),
// but never more than half the receive queue ahead of what was received:
// on an unpaced wire a blast otherwise overflows the queue, and the rate
// of the frames that got through, first to last, measures how the
// receiver's goroutine was scheduled rather than the wire.
func blast(b *testing.B, e *linktest.End, dst nic.MAC, n int, rc *rawCounter, queue int) {
	f := make([]byte, e.MTU()+ethHeaderLen)
	copy(f, dst[:])
	src := e.MAC()
	copy(f[6:], src[:])
	binary.BigEndian.PutUint16(f[12:], probeType)
	frames := n / len(f)
	w := endWire{e}
	for i := 0; i < frames; i++ {
		for i-rc.received() > queue/2 {
			runtime.Gosched()
		}
		if err := w.SendFrame(f, i < frames-1); err != nil && !errors.Is(err, nic.ErrQueueFull) {
			b.Fatal(err)
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStream sends 32 MiB over a linktest pair, unpaced and paced at
// 100 MB/s, with standard and 9000-byte frames, and in the same loop
// measures the raw frame throughput of the same wire (full-size frames
// blasted from one end, counted at the other from the first to the
// last): the ratio stream/raw is what the stream keeps of the wire. CPU
// ms per MB covers both ends, the wire and the benchmark's own copying.
func BenchmarkStream(b *testing.B) {
	const n = 32 << 20
	data := testData(n, 5)
	for _, bc := range []struct {
		name string
		mtu  int
		rate float64
	}{
		{"mtu1500/unpaced", 1500, 0}, {"mtu1500/100MBps", 1500, 100e6},
		{"mtu9000/unpaced", 9000, 0}, {"mtu9000/100MBps", 9000, 100e6},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var stream, raw float64
			var cpu time.Duration
			var st Stats
			var frames, bells, acks float64
			for i := 0; i < b.N; i++ {
				x, y, wx, wy, rc := benchPair(b, linktest.Config{MTU: bc.mtu, BytesPerSec: bc.rate})
				blast(b, x.end, y.end.MAC(), n, rc, 1024)
				time.Sleep(20 * time.Millisecond) // the last frames cross
				raw += rc.rate()

				c0 := cpuTime(b)
				start := time.Now()
				var got atomic.Int64
				done := make(chan error, 1)
				go func() {
					k, err := io.CopyBuffer(io.Discard, y.c, make([]byte, 256<<10))
					got.Store(k)
					done <- err
				}()
				for off := 0; off < n; off += 1 << 20 {
					if _, err := x.c.Write(data[off : off+1<<20]); err != nil {
						b.Fatal(err)
					}
				}
				x.c.Close()
				if err := <-done; err != nil || got.Load() != n {
					b.Fatalf("read %d of %d bytes: %v", got.Load(), n, err)
				}
				stream += float64(n) / time.Since(start).Seconds()
				cpu += cpuTime(b) - c0
				st = x.c.Stats()
				frames += float64(wx.frames.Load())
				bells += float64(wx.bells.Load())
				acks += float64(wy.frames.Load())
			}
			b.SetBytes(n)
			b.ReportMetric(stream/float64(b.N)/1e6, "stream-MB/s")
			b.ReportMetric(raw/float64(b.N)/1e6, "raw-MB/s")
			b.ReportMetric(stream/raw, "ratio")
			b.ReportMetric(cpu.Seconds()*1e3/float64(b.N)/(n/1e6), "cpu-ms/MB")
			// What an emulator charges for: the sender's frames per doorbell,
			// and the receiver's acks per data frame.
			b.ReportMetric(frames/bells, "frames/doorbell")
			b.ReportMetric(acks/frames, "acks/frame")
			b.Logf("last sender stats: %+v", st)
		})
	}
}
