package nic

import (
	"bytes"
	"context"
	"testing"
)

// TestRxQueueRecycle checks Copy and Recycle: a recycled frame's buffer
// takes a later frame (no allocation), its contents are the new frame's
// only, and frames that are not whole buffers of the queue's frame size
// are left alone.
func TestRxQueueRecycle(t *testing.T) {
	const frameCap = 1514
	base := func(b []byte) *byte { return &b[:1][0] }
	for _, c := range []struct {
		name    string
		recycle func(f []byte) []byte // what is handed back
		reused  bool
	}{
		{"whole frame", func(f []byte) []byte { return f }, true},
		{"frame cut short", func(f []byte) []byte { return f[:20] }, true},
		{"slice past the start", func(f []byte) []byte { return f[14:] }, false},
		{"foreign small buffer", func([]byte) []byte { return make([]byte, 60) }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var st Stats
			q := NewRxQueue(8, frameCap, &st)
			first := bytes.Repeat([]byte{0xaa}, 1000)
			q.Push(q.Copy(first))
			f, err := q.Pop(context.Background())
			if err != nil || !bytes.Equal(f, first) {
				t.Fatalf("Pop: %v, %d bytes", err, len(f))
			}
			if cap(f) < frameCap {
				t.Fatalf("Copy made a buffer of capacity %d, want at least %d", cap(f), frameCap)
			}
			q.Recycle(c.recycle(f))
			second := bytes.Repeat([]byte{0x55}, 100)
			g := q.Copy(second)
			if !bytes.Equal(g, second) {
				t.Fatalf("second frame reads %x..., want %x...", g[:4], second[:4])
			}
			if got := base(g) == base(f); got != c.reused {
				t.Errorf("buffer reused %v, want %v", got, c.reused)
			}
		})
	}
}

// TestRxQueueRecycleBound checks that the queue keeps a bounded number of
// buffers for reuse and drops the rest to the garbage collector.
func TestRxQueueRecycleBound(t *testing.T) {
	var st Stats
	q := NewRxQueue(8, 9014, &st)
	for i := 0; i < 10000; i++ {
		q.Recycle(make([]byte, 9014))
	}
	if n := len(q.free); n*9014 > recycleBytes {
		t.Errorf("%d buffers of 9014 bytes kept, more than %d bytes", n, recycleBytes)
	}
	none := NewRxQueue(8, 0, &st)
	none.Recycle(make([]byte, 1514))
	if cap(none.free) != 0 || len(none.free) != 0 {
		t.Errorf("a queue of frame size 0 keeps %d of %d buffers, want none", len(none.free), cap(none.free))
	}
}

// BenchmarkRxQueueCopy compares a driver's copy out of its DMA buffer
// with a fresh allocation per frame against one into recycled buffers.
func BenchmarkRxQueueCopy(b *testing.B) {
	src := make([]byte, 1514)
	for _, recycle := range []bool{false, true} {
		name := "allocate"
		if recycle {
			name = "recycle"
		}
		b.Run(name, func(b *testing.B) {
			var st Stats
			q := NewRxQueue(1024, 1514, &st)
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var f []byte
				if recycle {
					f = q.Copy(src)
				} else {
					f = append([]byte(nil), src...)
				}
				q.Push(f)
				g, _ := q.Pop(context.Background())
				if recycle {
					q.Recycle(g)
				}
			}
		})
	}
}
