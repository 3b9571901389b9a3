package netbridge

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/nic"
	"github.com/doppel-ft/doppel/nic/nictest"
)

var guestMAC = nic.MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

// frame returns an Ethernet frame to dst from src whose payload starts
// with n.
func frame(dst, src nic.MAC, n byte) []byte {
	f := make([]byte, 60)
	copy(f, dst[:])
	copy(f[6:], src[:])
	f[12], f[13] = 0x08, 0x00
	f[14] = n
	return f
}

// collector is a Deliver that keeps what it is given, or refuses.
type collector struct {
	mu     sync.Mutex
	got    [][]byte
	refuse bool
}

func (c *collector) deliver(f []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return false
	}
	c.got = append(c.got, f)
	return true
}

func (c *collector) frames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got...)
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func newBridge(t *testing.T, port nic.NIC, txq int) *Bridge {
	t.Helper()
	b, err := New(Config{NIC: port, MAC: guestMAC, TxQueue: txq})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestNewRefuses(t *testing.T) {
	a, _ := nictest.Pair(nictest.Config{})
	for _, tc := range []struct {
		name string
		c    Config
	}{
		{"no NIC", Config{MAC: guestMAC}},
		{"zero MAC", Config{NIC: a}},
		{"multicast MAC", Config{NIC: a, MAC: nic.MAC{0x01, 0, 0x5e, 0, 0, 1}}},
	} {
		if _, err := New(tc.c); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// The guest's frames reach the wire in the order sent, by both entries.
func TestTransmitInOrder(t *testing.T) {
	port, peer := nictest.Pair(nictest.Config{RxQueue: 1024})
	b := newBridge(t, port, 0)
	b.Start()
	const n = 500 // more than the fake's ring: TxReady must be honoured
	for i := 0; i < n; i++ {
		f := frame(peer.MAC(), guestMAC, byte(i))
		if i%2 == 0 {
			b.Transmit(uint64(i+1), f)
		} else if err := b.Send(f); err != nil {
			t.Fatal(err)
		}
		if i%64 == 63 {
			// Let the queue drain, so nothing is dropped: wait for it
			// rather than for a fixed time, which a loaded host (make
			// unit runs packages side by side under -race) outlasts.
			deadline := time.Now().Add(5 * time.Second)
			for b.Stats().TxFrames < uint64(i+1) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		f, err := peer.Receive(ctx)
		if err != nil {
			t.Fatalf("frame %d: %v (stats %+v)", i, err, b.Stats())
		}
		if f[14] != byte(i) {
			t.Fatalf("frame %d carries %d", i, f[14])
		}
	}
	// The transmit goroutine counts a frame after the NIC took it, so the
	// peer can hold the last one a moment before it is counted (CI saw 499).
	waitFor(t, "the last frame counted", func() bool { return b.Stats().TxFrames >= n })
	if s := b.Stats(); s.TxFrames != n || s.TxDroppedFull != 0 || s.TxErrors != 0 {
		t.Errorf("stats %+v, want %d frames sent and nothing dropped", s, n)
	}
}

// A full queue drops (never blocks) and counts; what was queued goes out
// in order, through a NIC ring that fills up (ErrQueueFull, TxReady).
func TestTransmitQueueFullDrops(t *testing.T) {
	port, peer := nictest.Pair(nictest.Config{Manual: true, TxRing: 4})
	b := newBridge(t, port, 8)
	send := func(from, to int) {
		done := make(chan struct{})
		go func() {
			for i := from; i < to; i++ {
				b.Transmit(uint64(i+1), frame(peer.MAC(), guestMAC, byte(i)))
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Transmit blocked on a full queue")
		}
	}
	send(0, 30) // not started: 8 queued, 22 dropped
	if s := b.Stats(); s.TxDroppedFull != 22 {
		t.Fatalf("stats %+v: want 22 dropped", s)
	}
	b.Start()
	// 4 fill the ring, the fifth waits for TxReady.
	waitFor(t, "the ring full", func() bool { return port.Counters().TxQueueFull > 0 })
	var got []byte
	waitFor(t, "the queued frames on the wire", func() bool {
		port.Deliver(4)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			f, err := peer.Receive(ctx)
			cancel()
			if err != nil {
				break
			}
			got = append(got, f[14])
		}
		return len(got) >= 8
	})
	for i, n := range got {
		if n != byte(i) {
			t.Fatalf("frames on the wire %v: want 0..7 in order", got)
		}
	}
	waitFor(t, "the last frame counted", func() bool { return b.Stats().TxFrames >= 8 })
	if s := b.Stats(); s.TxFrames != 8 || s.TxDroppedFull != 22 || s.TxErrors != 0 {
		t.Errorf("stats %+v: want 8 sent, 22 dropped", s)
	}
}

// Received frames reach the guest only when they are addressed to it.
func TestReceiveFilter(t *testing.T) {
	port, peer := nictest.Pair(nictest.Config{})
	b := newBridge(t, port, 0)
	c := &collector{}
	b.SetDeliver(c.deliver)
	b.Start()
	other := nic.MAC{0x52, 0x54, 0, 0, 0, 0x99}
	cases := []struct {
		dst  nic.MAC
		want bool
	}{
		{guestMAC, true},
		{nic.MAC{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, true},
		{nic.MAC{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}, true}, // IPv4 multicast
		{other, false},
		{port.MAC(), false}, // the physical port's own address is not the guest's
	}
	var want [][]byte
	for i, tc := range cases {
		f := frame(tc.dst, peer.MAC(), byte(i))
		if err := peer.Transmit(f); err != nil {
			t.Fatal(err)
		}
		if tc.want {
			want = append(want, f)
		}
	}
	waitFor(t, "every frame handled", func() bool {
		s := b.Stats()
		return s.RxFrames+s.RxNotForGuest == uint64(len(cases))
	})
	got := c.frames()
	if len(got) != len(want) {
		t.Fatalf("delivered %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("frame %d: got %x, want %x", i, got[i][:15], want[i][:15])
		}
	}
	if s := b.Stats(); s.RxNotForGuest != 2 {
		t.Errorf("stats %+v: want 2 frames not for the guest", s)
	}
}

// Without a device, or with one that refuses, frames are counted, not lost
// silently, and the bridge keeps going.
func TestReceiveNoGuestAndRefused(t *testing.T) {
	port, peer := nictest.Pair(nictest.Config{})
	b := newBridge(t, port, 0)
	b.Start()
	send := func(n byte) {
		if err := peer.Transmit(frame(guestMAC, peer.MAC(), n)); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	waitFor(t, "no guest counted", func() bool { return b.Stats().RxNoGuest == 1 })
	c := &collector{refuse: true}
	b.SetDeliver(c.deliver)
	send(2)
	waitFor(t, "refusal counted", func() bool { return b.Stats().RxRefused == 1 })
	c.mu.Lock()
	c.refuse = false
	c.mu.Unlock()
	send(3)
	waitFor(t, "delivery", func() bool { return b.Stats().RxFrames == 1 })
	if got := c.frames(); len(got) != 1 || got[0][14] != 3 {
		t.Errorf("delivered %d frames, want only frame 3", len(got))
	}
	b.SetDeliver(nil)
	send(4)
	waitFor(t, "no guest counted again", func() bool { return b.Stats().RxNoGuest == 2 })
}

func TestCloseStops(t *testing.T) {
	port, peer := nictest.Pair(nictest.Config{})
	b := newBridge(t, port, 0)
	c := &collector{}
	b.SetDeliver(c.deliver)
	b.Start()
	done := make(chan struct{})
	go func() { b.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := b.Send(frame(peer.MAC(), guestMAC, 1)); err == nil {
		t.Error("Send after Close succeeded")
	}
	peer.Transmit(frame(guestMAC, peer.MAC(), 2))
	time.Sleep(20 * time.Millisecond)
	if len(c.frames()) != 0 {
		t.Error("a frame was delivered after Close")
	}
}

func TestGratuitousARP(t *testing.T) {
	f, err := GratuitousARP(guestMAC, netip.MustParseAddr("10.0.2.15"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, // Ethernet
		0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // ARP request, Ethernet/IPv4
		0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 0, 2, 15, // sender
		0, 0, 0, 0, 0, 0, 10, 0, 2, 15, // target: zero MAC, the same IP
	}
	want = append(want, make([]byte, 60-len(want))...)
	if !bytes.Equal(f, want) {
		t.Errorf("got\n%x\nwant\n%x", f, want)
	}
	if _, err := GratuitousARP(guestMAC, netip.MustParseAddr("fe80::1")); err == nil {
		t.Error("IPv6 address accepted")
	}
	port, peer := nictest.Pair(nictest.Config{})
	b := newBridge(t, port, 0)
	b.Start()
	if err := b.Announce(netip.MustParseAddr("10.0.2.15")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := peer.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("announced %x", got)
	}
}
