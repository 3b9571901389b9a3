package virtionet

import (
	"bytes"
	"testing"
)

// holder is the output-commit layer the package doc describes: it keeps
// transmitted frames until the checkpoint that produced them is
// acknowledged, then releases them in sequence order.
type holder struct {
	held     []sent
	released []sent
}

func (h *holder) Transmit(seq uint64, f []byte) { h.held = append(h.held, sent{seq, f}) }

// ack releases every frame up to the sequence number read at the
// acknowledged checkpoint's pause.
func (h *holder) ack(upto uint64) {
	i := 0
	for ; i < len(h.held) && h.held[i].seq <= upto; i++ {
		h.released = append(h.released, h.held[i])
	}
	h.held = h.held[i:]
}

func TestOutputCommitProtocol(t *testing.T) {
	g := newGuest(t, Options{})
	h := &holder{}
	g.dev.backend = h
	g.init(baseFeatures)
	g.send(frame(60, 1))
	g.send(frame(60, 2))
	// Checkpoint 1: pause, quiesce, read the epoch's last frame, save.
	g.dev.Quiesce(true)
	cp1 := g.dev.TxSeq()
	blob, _ := g.dev.Save()
	mem := bytes.Clone(g.mem)
	txIdx := g.txIdx
	g.dev.Quiesce(false)
	g.send(frame(60, 3)) // epoch 2, never acknowledged
	if len(h.released) != 0 {
		t.Fatal("released before the acknowledgement")
	}
	h.ack(cp1)
	if len(h.released) != 2 || h.released[0].seq != 1 || h.released[1].seq != 2 || len(h.held) != 1 {
		t.Fatalf("after ack of %d: released %d, held %d", cp1, len(h.released), len(h.held))
	}
	// The primary dies: the secondary restores checkpoint 1 and the guest
	// sends again; numbering continues after what was released.
	s := newGuest(t, Options{})
	h2 := &holder{}
	s.dev.backend = h2
	copy(s.mem, mem)
	s.txIdx = txIdx
	if err := s.dev.Restore(blob); err != nil {
		t.Fatal(err)
	}
	s.send(frame(60, 4))
	if len(h2.held) != 1 || h2.held[0].seq != cp1+1 || !bytes.Equal(h2.held[0].frame, frame(60, 4)) {
		t.Errorf("secondary's first frame: %+v", h2.held)
	}
}
