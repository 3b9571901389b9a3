package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The world is the outside world that guest output is released to. It
// plays the part a TCP peer or a switch plays on bare metal, with two
// checks: each record must start exactly where the stream is (a duplicate or
// a gap is an error), and once a newer generation (a promoted secondary) has
// connected, records from an older one are refused and counted (fencing).
//
// Client protocol: generation u64 →, ← next offset u64, then records
// offset u64 | length u32 | sent-at u64 (UnixNano) | bytes (recordHeader).
// The sender's timestamp, not the time this loaded process got round to
// reading the record, says when a primary released it (the processes share
// one clock): reading time once made an in-flight record from a killed
// primary look like a release after the takeover.
type world struct {
	mu       sync.Mutex
	data     []byte
	gen      uint64 // highest generation that connected
	errs     []string
	fenced   int
	byGen    map[uint64]int       // bytes accepted per generation
	lastFrom map[uint64]time.Time // when each generation last sent accepted output
	firstGen map[uint64]time.Time
}

// recordHeader is the size of a record's header: offset, length, sent-at.
const recordHeader = 20

func newWorld() *world {
	return &world{byGen: map[uint64]int{}, lastFrom: map[uint64]time.Time{}, firstGen: map[uint64]time.Time{}}
}

func (w *world) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go w.client(c)
	}
}

func (w *world) client(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 1<<20)
	var hdr [recordHeader]byte
	if _, err := io.ReadFull(r, hdr[:8]); err != nil {
		return
	}
	gen := binary.LittleEndian.Uint64(hdr[:8])
	w.mu.Lock()
	if gen > w.gen {
		w.gen = gen
		w.firstGen[gen] = time.Now()
	}
	next := uint64(len(w.data))
	w.mu.Unlock()
	if _, err := c.Write(binary.LittleEndian.AppendUint64(nil, next)); err != nil {
		return
	}
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return // a partial record from a dying primary was never delivered
		}
		off := binary.LittleEndian.Uint64(hdr[:8])
		n := binary.LittleEndian.Uint32(hdr[8:])
		sent := time.Unix(0, int64(binary.LittleEndian.Uint64(hdr[12:])))
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return
		}
		w.mu.Lock()
		switch {
		case gen < w.gen:
			w.fenced++
			w.errs = append(w.errs, fmt.Sprintf("generation %d released %d bytes at offset %d after generation %d took over", gen, n, off, w.gen))
		case off != uint64(len(w.data)):
			kind := "gap"
			if off < uint64(len(w.data)) {
				kind = "duplicate"
			}
			w.errs = append(w.errs, fmt.Sprintf("%s: generation %d released offset %d, stream at %d", kind, gen, off, len(w.data)))
		default:
			w.data = append(w.data, b...)
			w.byGen[gen] += len(b)
			w.lastFrom[gen] = sent
		}
		w.mu.Unlock()
	}
}

// worldClient is an ftmirror.OutputSink writing to the world.
type worldClient struct {
	c    net.Conn
	Next uint64 // the world's stream position when we connected
	buf  []byte
}

func dialWorld(addr string, gen uint64) (*worldClient, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(binary.LittleEndian.AppendUint64(nil, gen)); err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, err
	}
	return &worldClient{c: c, Next: binary.LittleEndian.Uint64(b[:])}, nil
}

func (w *worldClient) Release(off uint64, b []byte) error {
	if dying.Load() {
		select {} // killed at a point: nothing more reaches the world
	}
	w.buf = binary.LittleEndian.AppendUint64(w.buf[:0], off)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(b)))
	w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(time.Now().UnixNano()))
	w.buf = append(w.buf, b...)
	_, err := w.c.Write(w.buf)
	return err
}
