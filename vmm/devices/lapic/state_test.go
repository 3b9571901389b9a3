package lapic

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// rig is one LAPIC with its clock and recorders; a random op drives it
// and returns everything it answered.
type rig struct {
	l   *LAPIC
	c   *fakeClock
	msg *msgRecorder
	eoi *eoiRecorder
}

func newRig() *rig {
	l, c, m, e := newTest(1)
	return &rig{l, c, m, e}
}

// outputs returns and clears what the LAPIC sent.
func (r *rig) outputs() string {
	s := fmt.Sprint(r.msg.msgs, r.eoi.vectors)
	r.msg.msgs, r.eoi.vectors = nil, nil
	return s
}

var randomRegs = []uint64{
	RegID, RegVersion, RegTPR, RegAPR, RegPPR, RegEOI, RegLDR, RegDFR, RegSVR,
	RegISR + 0x30, RegTMR + 0x40, RegIRR + 0x50, RegESR, RegICRLow, RegICRHigh,
	RegLVTTimer, RegLVTThermal, RegLVTPerf, RegLVTLINT0, RegLVTLINT1, RegLVTError,
	RegTimerInitialCount, RegTimerCurrentCount, RegTimerDivide, 0x3A0, 0x7F0,
}

// randomValue picks a value for register off that is likely to matter.
func randomValue(rng *rand.Rand, off uint64) uint32 {
	vec := uint32(0x60 + rng.Intn(0x60)) // classes 6-11
	switch off {
	case RegSVR:
		return SVREnable | 0xFF
	case RegICRLow:
		modes := []uint32{0, 0, 1, 4, 5, 6, 7}
		return uint32(rng.Intn(4))<<18 | modes[rng.Intn(len(modes))]<<8 | ICRAssert | vec | uint32(rng.Intn(2))*ICRDestLogical
	case RegLVTTimer:
		return uint32(rng.Intn(3))<<17 | uint32(rng.Intn(4)/3)*LVTMasked | vec
	case RegLVTLINT0, RegLVTLINT1:
		modes := []uint32{0, 4, 7}
		return modes[rng.Intn(3)]<<8 | uint32(rng.Intn(2))*LVTActiveLow | vec
	case RegTimerInitialCount:
		return uint32(rng.Intn(5000))
	case RegTPR:
		return uint32(rng.Intn(0x90))
	}
	return rng.Uint32()
}

func randomOp(rng *rand.Rand) func(*rig) string {
	switch k := rng.Intn(14); k {
	case 0, 1, 2:
		off := randomRegs[rng.Intn(len(randomRegs))]
		v := randomValue(rng, off)
		return func(r *rig) string { wr(r.l, off, v); return r.outputs() }
	case 3, 4:
		off := randomRegs[rng.Intn(len(randomRegs))]
		return func(r *rig) string { return fmt.Sprint(rd(r.l, off)) }
	case 5, 6:
		modes := []devices.DeliveryMode{0, 0, 0, 1, 4, 5, 6, 7}
		m := devices.Message{Vector: uint8(0x10 + rng.Intn(0xA0)), Mode: modes[rng.Intn(len(modes))], Level: rng.Intn(2) == 0}
		return func(r *rig) string { r.l.Deliver(m); return r.outputs() }
	case 7:
		return func(r *rig) string {
			v, ok := r.l.PendingVector()
			if ok {
				r.l.Ack(v)
			}
			return fmt.Sprint(v, ok, r.outputs())
		}
	case 8:
		d := int64(rng.Intn(4000))
		return func(r *rig) string {
			r.c.advance(d)
			r.l.Poll(r.c.Nanotime())
			dl, ok := r.l.NextDeadline()
			return fmt.Sprint(dl, ok)
		}
	case 9:
		i, high := rng.Intn(2), rng.Intn(2) == 0
		return func(r *rig) string {
			if i == 0 {
				r.l.LINT0().Set(high)
			} else {
				r.l.LINT1().Set(high)
			}
			return r.outputs()
		}
	case 10:
		return func(r *rig) string {
			n, i := r.l.TakeNMI(), r.l.TakeINIT()
			v, s := r.l.TakeSIPI()
			e := r.l.ExtINTPending()
			r.l.AckExtINT()
			return fmt.Sprint(n, i, v, s, e, r.l.TPRThreshold(), r.l.EOIExitBitmap())
		}
	case 11:
		v := uint64(rng.Intn(20000))
		return func(r *rig) string {
			err := r.l.WriteMSR(MSRTSCDeadline, v)
			got, _ := r.l.ReadMSR(MSRTSCDeadline)
			return fmt.Sprint(err, got, r.outputs())
		}
	case 12:
		// Toggle x2APIC mode now and then, then use an x2APIC register.
		base := []uint64{DefaultBase | APICBaseEnable, DefaultBase | APICBaseEnable | APICBaseExtd, DefaultBase}[rng.Intn(3)]
		return func(r *rig) string {
			err := r.l.WriteMSR(MSRAPICBase, base)
			return fmt.Sprint(err, r.outputs())
		}
	default:
		msr := uint32(0x800 + rng.Intn(0x40))
		v := uint64(randomValue(rng, uint64(msr-0x800)<<4))
		write := rng.Intn(2) == 0
		return func(r *rig) string {
			if write {
				return fmt.Sprint(r.l.WriteMSR(msr, v), r.outputs())
			}
			got, err := r.l.ReadMSR(msr)
			return fmt.Sprint(got, err)
		}
	}
}

// TestSaveRestoreRandom saves at a random point of a random sequence,
// restores into a fresh LAPIC and checks both answer the rest alike.
func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		ops := make([]func(*rig) string, 400)
		for i := range ops {
			ops[i] = randomOp(rng)
		}
		a := newRig()
		enable(a.l)
		cut := rng.Intn(len(ops))
		for _, op := range ops[:cut] {
			op(a)
		}
		blob, err := a.l.Save()
		if err != nil {
			t.Fatal(err)
		}
		b := newRig()
		b.c.ns.Store(a.c.Nanotime())
		if err := b.l.Restore(blob); err != nil {
			t.Fatalf("seed %d: restore: %v", seed, err)
		}
		for i, op := range ops[cut:] {
			if ga, gb := op(a), op(b); ga != gb {
				t.Fatalf("seed %d op %d after cut %d: original %q, restored %q", seed, cut+i, cut, ga, gb)
			}
		}
		sa, _ := a.l.Save()
		sb, _ := b.l.Save()
		if !bytes.Equal(sa, sb) {
			t.Fatalf("seed %d: final states differ", seed)
		}
	}
}

func TestRestoreRefused(t *testing.T) {
	r := newRig()
	enable(r.l)
	wr(r.l, RegTPR, 0x20)
	good, _ := r.l.Save()
	bad := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	for name, blob := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"version":   bad(4, 9),
		"bool":      bad(len(good)-1, 2),
		"svr":       bad(10+8+4+1+4+4+1, 0xFF), // SVR bits 15:8
	} {
		if err := r.l.Restore(blob); !errors.Is(err, devices.ErrBadState) {
			t.Errorf("%s: err = %v, want ErrBadState", name, err)
		}
	}
	if after, _ := r.l.Save(); !bytes.Equal(after, good) {
		t.Error("refused restore changed the LAPIC")
	}
}

func FuzzRestore(f *testing.F) {
	r := newRig()
	enable(r.l)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		randomOp(rng)(r)
	}
	good, _ := r.l.Save()
	f.Add(good)
	f.Fuzz(func(t *testing.T, blob []byte) {
		r := newRig()
		before, _ := r.l.Save()
		if err := r.l.Restore(blob); err != nil {
			if !errors.Is(err, devices.ErrBadState) {
				t.Fatalf("err = %v, not ErrBadState", err)
			}
			if after, _ := r.l.Save(); !bytes.Equal(before, after) {
				t.Fatal("failed restore changed the LAPIC")
			}
			return
		}
		if again, _ := r.l.Save(); !bytes.Equal(again, blob) {
			t.Fatal("save after restore differs from the blob")
		}
		// A restored LAPIC must survive use.
		rng := rand.New(rand.NewSource(int64(len(blob))))
		for i := 0; i < 50; i++ {
			randomOp(rng)(r)
		}
	})
}
