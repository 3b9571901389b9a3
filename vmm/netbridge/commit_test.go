package netbridge

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ft/vmguest"
	"github.com/doppel-ft/doppel/nic/nictest"
)

// Output commit end to end on the host: the device's frames go into the
// VM's output stream (vmguest.Output), nothing reaches the wire until the
// stream is released, and the release side (vmguest.Splitter) then sends
// them through the bridge in order, serial bytes to the console between.
func TestOutputCommitThroughBridge(t *testing.T) {
	port, peer := nictest.Pair(nictest.Config{})
	b := newBridge(t, port, 0)
	b.Start()
	var stream []byte
	out := vmguest.NewOutput(func(rec []byte) { stream = append(stream, rec...) })
	for i := 0; i < 5; i++ {
		out.Transmit(uint64(i+1), frame(peer.MAC(), guestMAC, byte(i)))
		if _, err := out.Write([]byte{'a' + byte(i), '\n'}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if f, err := peer.Receive(ctx); err == nil {
		t.Fatalf("frame %x on the wire before its release", f[:15])
	}
	cancel()
	var console bytes.Buffer
	sp := vmguest.NewSplitter(&console, b, 0, 0)
	// Released in two pieces, split inside a record, as the engine may.
	if err := sp.Release(0, stream[:7]); err != nil {
		t.Fatal(err)
	}
	if err := sp.Release(7, stream[7:]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		f, err := peer.Receive(ctx)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f[14] != byte(i) {
			t.Fatalf("frame %d carries %d", i, f[14])
		}
	}
	if console.String() != "a\nb\nc\nd\ne\n" {
		t.Errorf("console %q", console.String())
	}
	if sp.LastSeq() != 5 {
		t.Errorf("splitter at frame %d, want 5", sp.LastSeq())
	}
}
