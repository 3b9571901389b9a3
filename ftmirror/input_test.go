package ftmirror

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// Input records reach the secondary's Config.Input whole and in order,
// while checkpoints go on; before a session they go nowhere.
func TestInputForwarded(t *testing.T) {
	var (
		mu  sync.Mutex
		got [][]byte
	)
	r := newRig(t, 256, func(c *Config) {
		c.Input = func(b []byte) {
			mu.Lock()
			got = append(got, append([]byte(nil), b...))
			mu.Unlock()
		}
	})
	r.p.Input([]byte("before any session"))
	pc, sc := net.Pipe()
	perr, serr := r.serve(pc, sc)
	r.waitEpoch(2)
	const n = 300
	var want [][]byte
	for i := range n {
		b := []byte(fmt.Sprintf("input %d %s", i, bytes.Repeat([]byte{byte(i)}, i)))
		want = append(want, b)
		r.p.Input(b)
		if i%50 == 0 {
			time.Sleep(2 * time.Millisecond) // across epochs
		}
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k >= n {
			break
		}
	}
	c := r.committed()
	r.waitEpoch(c + 2) // checkpoints go on
	pc.Close()
	r.stopGuest()
	<-perr
	<-serr
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("secondary got %d records, want %d", len(got), n)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: %q, want %q", i, got[i], want[i])
		}
	}
	if sent, dropped := r.p.Inputs(); sent != n || dropped != 0 {
		t.Errorf("Inputs() = %d sent, %d dropped; want %d, 0", sent, dropped, n)
	}
}

// Input never blocks: a record that finds the queue full is dropped and
// counted.
func TestInputDropsWhenFull(t *testing.T) {
	r := newRig(t, 16, nil)
	r.p.input.Store(&pSession{inputs: make(chan []byte, 2)}) // nobody drains it
	done := make(chan struct{})
	go func() {
		for range 5 {
			r.p.Input([]byte{1})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Input blocked on a full queue")
	}
	if sent, dropped := r.p.Inputs(); sent != 0 || dropped != 3 {
		t.Errorf("Inputs() = %d sent, %d dropped; want 0, 3", sent, dropped)
	}
}

// The queue is bounded in bytes too: input cannot hold up the
// checkpoint's frames by more than InputQueueBytes.
func TestInputQueueBytes(t *testing.T) {
	r := newRig(t, 16, nil)
	r.p.input.Store(&pSession{inputs: make(chan []byte, InputQueue)})
	big := make([]byte, InputQueueBytes/2+1)
	r.p.Input(big)
	r.p.Input(big)
	r.p.Input(make([]byte, 100))
	if sent, dropped := r.p.Inputs(); sent != 0 || dropped != 1 {
		t.Errorf("Inputs() = %d sent, %d dropped; want 0, 1 (the second large record)", sent, dropped)
	}
}
