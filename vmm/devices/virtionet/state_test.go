package virtionet

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
	"github.com/doppel-ft/doppel/vmm/devices/devtest"
	"github.com/doppel-ft/doppel/vmm/devices/pci"
	"github.com/doppel-ft/doppel/vmm/devices/virtio"
)

// subject drives a guest with generated operations for devtest.
type subject struct{ *guest }

const (
	opInit = iota
	opSend
	opPostRx
	opReceive
	opQuiesce
	opISR
	opRead
	opWrite
	opReceived
	opLink
	opBusMaster
	opCorrupt
	numOps
)

func hash(frames ...[]byte) uint64 {
	h := fnv.New64a()
	for _, f := range frames {
		fmt.Fprintf(h, "%d:", len(f))
		h.Write(f)
	}
	return h.Sum64()
}

func (s subject) Do(op devtest.Op) uint64 {
	g := s.guest
	switch op.Kind {
	case opInit:
		feats := uint64(baseFeatures)
		if op.Value&1 == 1 {
			feats |= 1 << FMrgRxBuf
		}
		g.init(feats)
	case opSend:
		g.send(frame(int(op.Value%1600), byte(op.Value>>16)))
	case opPostRx:
		g.postRx(1+int(op.Value%4), []uint32{64, 512, 1526, 2048}[op.Value>>8%4])
	case opReceive:
		if g.dev.Receive(frame(int(op.Value%2000), byte(op.Value>>16))) {
			return 1
		}
	case opQuiesce:
		g.dev.Quiesce(op.Value&1 == 1)
	case opISR:
		return uint64(g.readISR())
	case opRead:
		return g.r(uint64(op.Offset), op.Size)
	case opWrite:
		g.w(uint64(op.Offset), op.Size, uint64(op.Value))
	case opReceived:
		got, _ := g.receivedLoose()
		return hash(got...)
	case opLink:
		g.dev.SetLink(op.Value&1 == 1)
	case opBusMaster:
		g.dev.WriteConfig(pci.CommandOffset, 2, pci.CommandMemory|op.Value&pci.CommandBusMaster)
	case opCorrupt:
		ring := []uint64{rxRing, txRing}[op.Value&1]
		g.mem[ring+uint64(op.Offset)%0x300] = byte(op.Value >> 8)
	}
	return 0
}

// receivedLoose is received without the test's assertions: a corrupted
// guest may see anything.
func (g *guest) receivedLoose() ([][]byte, int) {
	els := g.used(rxRing, g.rxOld)
	g.rxOld += uint16(len(els))
	var out [][]byte
	for _, e := range els {
		b := rxBufs + uint64(e.id%qsize)*bufStride
		n := min(uint64(e.len), bufStride)
		out = append(out, g.mem[b:b+n])
	}
	return out, len(els)
}

func (s subject) Observe() string {
	g := s.guest
	var tx []uint64
	for _, f := range g.sent {
		tx = append(tx, f.seq, hash(f.frame))
	}
	g.sent = nil
	o := fmt.Sprintf("line %v/%d status %#x held %d rxseq %d stats %+v tx %v", g.line.High, g.line.Rises, g.dev.Status(), g.dev.Held(), g.dev.RxSeq(), g.dev.Stats(), tx)
	g.line.Rises = 0
	return o
}

func genOp(r *rand.Rand) devtest.Op {
	op := devtest.Op{Value: r.Uint32()}
	weights := []int{opInit, opSend, opSend, opSend, opPostRx, opPostRx, opReceive, opReceive, opReceive,
		opQuiesce, opISR, opISR, opRead, opWrite, opReceived, opReceived, opLink, opBusMaster, opCorrupt}
	op.Kind = weights[r.Intn(len(weights))]
	switch op.Kind {
	case opInit, opWrite, opCorrupt, opBusMaster, opLink:
		if r.Intn(3) != 0 && op.Kind != opInit {
			op.Kind = opSend // keep the rarer disturbances rare
		}
	}
	if op.Kind == opRead || op.Kind == opWrite {
		op.Size = 1 << r.Intn(3)
		op.Offset = uint16(r.Intn(virtio.CommonCfgLen/op.Size) * op.Size)
		if r.Intn(4) == 0 {
			op.Offset += DeviceOffset &^ 0xFF
		}
	}
	return op
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		var cur *guest
		devtest.SaveRestore(t, seed, 1200, func(*devtest.Clock) devtest.Subject {
			g := newGuest(t, Options{MaxHeld: 8})
			if cur != nil {
				// The copy sees the same guest memory, driver indices
				// and host quiesce setting as the original at the save.
				copy(g.mem, cur.mem)
				g.rxIdx, g.txIdx, g.rxOld = cur.rxIdx, cur.txIdx, cur.rxOld
				g.dev.Quiesce(cur.dev.Quiesced())
				return subject{g}
			}
			cur = g
			return subject{g}
		}, genOp)
	}
}

// A device mid-traffic, with held frames and a pending interrupt.
func busyGuest(t testing.TB) *guest {
	g := newGuest(t, Options{MAC: [6]byte{2, 0, 0, 0, 0, 1}})
	g.init(baseFeatures | 1<<FMrgRxBuf)
	g.postRx(3, 1526)
	g.send(frame(100, 1))
	g.dev.Receive(frame(60, 2))
	g.dev.Quiesce(true)
	g.dev.Receive(frame(70, 3))
	g.dev.Receive(frame(80, 4))
	g.dev.SetLink(false)
	return g
}

func TestSaveRestoreCarriesHeldFrames(t *testing.T) {
	a := busyGuest(t)
	blob, err := a.dev.Save()
	if err != nil {
		t.Fatal(err)
	}
	b := newGuest(t, Options{})
	copy(b.mem, a.mem)
	b.rxIdx, b.txIdx, b.rxOld = a.rxIdx, a.txIdx, a.rxOld
	if err := b.dev.Restore(blob); err != nil {
		t.Fatal(err)
	}
	if !b.line.High || b.dev.Held() != 2 || b.dev.TxSeq() != 1 || b.dev.MAC() != a.dev.MAC() {
		t.Fatalf("restored: line %v held %d txseq %d", b.line.High, b.dev.Held(), b.dev.TxSeq())
	}
	b.received() // the frame delivered before the save
	if b.used(rxRing, b.rxOld) != nil {
		t.Fatal("Restore delivered frames: it must do no DMA")
	}
	b.postRx(2, 1526)
	b.dev.Receive(frame(90, 5))
	got, _ := b.received()
	if len(got) != 3 || string(got[0]) != string(frame(70, 3)) || string(got[2]) != string(frame(90, 5)) {
		t.Errorf("the secondary delivered %d frames", len(got))
	}
	b.send(frame(10, 6))
	if b.sent[0].seq != 2 {
		t.Errorf("sequence after restore %d, want 2", b.sent[0].seq)
	}
}

// TestReplayAfterRestore is input forwarding as the FT layer does it:
// the primary forwards each accepted frame with its receive sequence
// number; the secondary restores a checkpoint and hands the device, in
// order, the forwarded frames numbered above the restored RxSeq. The
// guest then sees every frame exactly once, in arrival order.
func TestReplayAfterRestore(t *testing.T) {
	type fwd struct {
		seq   uint64
		frame []byte
	}
	var forwarded []fwd
	a := newGuest(t, Options{MaxHeld: 3})
	a.init(baseFeatures | 1<<FMrgRxBuf)
	a.postRx(2, 1526)
	receive := func(f []byte) {
		if a.dev.Receive(f) {
			forwarded = append(forwarded, fwd{a.dev.RxSeq(), f})
		}
	}
	receive(frame(60, 1)) // delivered before the checkpoint
	a.dev.Quiesce(true)   // the checkpoint's pause
	receive(frame(70, 2)) // held: in the checkpoint
	blob, err := a.dev.Save()
	if err != nil {
		t.Fatal(err)
	}
	receive(frame(80, 3)) // after the save: not in the checkpoint
	a.dev.Quiesce(false)
	receive(frame(90, 4))
	receive(frame(MaxFrameLen+1, 5)) // refused: not forwarded
	if a.dev.RxSeq() != 4 || len(forwarded) != 4 {
		t.Fatalf("primary: rxseq %d, %d frames forwarded; want 4 and 4", a.dev.RxSeq(), len(forwarded))
	}

	b := newGuest(t, Options{MaxHeld: 3})
	copy(b.mem, a.mem) // the checkpoint's memory, taken with the blob
	b.rxIdx, b.txIdx, b.rxOld = a.rxIdx, a.txIdx, a.rxOld
	if err := b.dev.Restore(blob); err != nil {
		t.Fatal(err)
	}
	if b.dev.RxSeq() != 2 {
		t.Fatalf("restored rxseq %d, want 2", b.dev.RxSeq())
	}
	for _, f := range forwarded {
		if f.seq > b.dev.RxSeq() && !b.dev.Receive(f.frame) {
			t.Fatalf("replayed frame %d refused", f.seq)
		}
	}
	b.rxOld = 0 // read the ring from the start: what the guest sees
	b.postRx(3, 1526)
	got, _ := b.received()
	want := [][]byte{frame(60, 1), frame(70, 2), frame(80, 3), frame(90, 4)}
	if len(got) != len(want) {
		t.Fatalf("the guest saw %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if string(got[i]) != string(want[i]) {
			t.Errorf("frame %d: %d bytes, want the %d-byte frame %d", i, len(got[i]), len(want[i]), i+1)
		}
	}
	if b.dev.RxSeq() != a.dev.RxSeq() {
		t.Errorf("rxseq %d after the replay, the primary had %d", b.dev.RxSeq(), a.dev.RxSeq())
	}
}

func TestRestoreRefuses(t *testing.T) {
	blob, _ := busyGuest(t).dev.Save()
	other := newGuest(t, Options{NoMergeable: true})
	if err := other.dev.Restore(blob); !errors.Is(err, devices.ErrBadState) {
		t.Errorf("a device with other features took the state: %v", err)
	}
	small := newGuest(t, Options{MaxHeld: 1})
	if err := small.dev.Restore(blob); !errors.Is(err, devices.ErrBadState) {
		t.Errorf("more held frames than MaxHeld accepted: %v", err)
	}
	for _, bad := range [][]byte{blob[:len(blob)-1], append(append([]byte{}, blob...), 0), nil} {
		if err := newGuest(t, Options{}).dev.Restore(bad); !errors.Is(err, devices.ErrBadState) {
			t.Errorf("bad blob of %d bytes accepted: %v", len(bad), err)
		}
	}
}

func FuzzRestore(f *testing.F) {
	blob, _ := busyGuest(f).dev.Save()
	f.Add(blob)
	fresh, _ := newGuest(f, Options{}).dev.Save()
	f.Add(fresh)
	f.Fuzz(func(t *testing.T, b []byte) {
		devtest.Restore(t, newGuest(t, Options{}).dev, b)
	})
}

func (s subject) Save() ([]byte, error)  { return s.dev.Save() }
func (s subject) Restore(b []byte) error { return s.dev.Restore(b) }

// The device's state, held frames at their byte limit included, goes
// through the PCI bus's Save and Restore.
func TestSaveThroughPCIBus(t *testing.T) {
	newBus := func(g *guest) *pci.Bus {
		b := pci.NewBus([4]devices.Line{devices.NoLine, devices.NoLine, devices.NoLine, devices.NoLine})
		if err := b.Add(4, 0, g.dev); err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := newGuest(t, Options{})
	busA := newBus(a)
	a.init(baseFeatures)
	a.dev.Quiesce(true)
	for i := 0; i < 9; i++ {
		a.dev.Receive(frame(MaxFrameLen, byte(i)))
	}
	if a.dev.Held() != DefaultMaxHeldBytes/MaxFrameLen || a.dev.Stats().RxDroppedFull != 1 {
		t.Fatalf("held %d, dropped %d: the byte bound did not hold", a.dev.Held(), a.dev.Stats().RxDroppedFull)
	}
	blob, err := busA.Save()
	if err != nil {
		t.Fatal(err)
	}
	b := newGuest(t, Options{})
	if err := newBus(b).Restore(blob); err != nil {
		t.Fatalf("bus restore: %v", err)
	}
	if b.dev.Held() != a.dev.Held() {
		t.Errorf("held %d after the bus restore, want %d", b.dev.Held(), a.dev.Held())
	}
	if _, err := New(b.mem, &holder{}, Options{MaxHeldBytes: 1 << 20}); err == nil {
		t.Error("a held-frame budget over what the bus can save accepted")
	}
}
