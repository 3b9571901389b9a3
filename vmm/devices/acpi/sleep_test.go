package acpi

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

func TestSleepPowerOff(t *testing.T) {
	offs := 0
	s := NewSleep(func() { offs++ })
	// Linux's acpi_hw_extended_sleep: clear WAK_STS, then SLP_TYP|SLP_EN.
	s.PortOut(1, 1, WakeStatus)
	s.PortOut(0, 1, S5SleepType<<SleepTypeShift) // no SLP_EN: nothing
	if offs != 0 {
		t.Fatal("powered off without SLP_EN")
	}
	if got := s.PortIn(0, 1); got != S5SleepType<<SleepTypeShift {
		t.Errorf("control reads %#x, want SLP_TYP back", got)
	}
	s.PortOut(0, 1, S5SleepType<<SleepTypeShift|SleepEnable)
	if offs != 1 {
		t.Fatalf("PowerOff called %d times, want 1", offs)
	}
	if got := s.PortIn(1, 1); got != 0 {
		t.Errorf("status after S5 = %#x", got)
	}
}

func TestSleepOtherStates(t *testing.T) {
	offs := 0
	s := NewSleep(func() { offs++ })
	s.PortOut(0, 1, 3<<SleepTypeShift|SleepEnable) // S3: not offered
	if offs != 0 {
		t.Fatal("S3 request powered off")
	}
	if got := s.PortIn(1, 1); got != WakeStatus {
		t.Fatalf("status after S3 request = %#x, want WAK_STS", got)
	}
	s.PortOut(1, 1, 0x7F) // writing 0 to WAK_STS keeps it
	if got := s.PortIn(1, 1); got != WakeStatus {
		t.Errorf("status = %#x after writing 0 to WAK_STS", got)
	}
	s.PortOut(0, 2, WakeStatus<<8) // a 16-bit write reaches both registers
	if got := s.PortIn(0, 2); got != 0 {
		t.Errorf("registers = %#x after clearing WAK_STS", got)
	}
}

func randomSleepOp(rng *rand.Rand) func(*Sleep, *int) string {
	off, size, v := uint16(rng.Intn(3)), 1+rng.Intn(2), rng.Uint32()
	if rng.Intn(2) == 0 {
		return func(s *Sleep, offs *int) string { return fmt.Sprint(s.PortIn(off, size)) }
	}
	return func(s *Sleep, offs *int) string {
		s.PortOut(off, size, v)
		return fmt.Sprint(*offs)
	}
}

func TestSleepSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 100; seed++ {
		rng := rand.New(rand.NewSource(seed))
		ops := make([]func(*Sleep, *int) string, 60)
		for i := range ops {
			ops[i] = randomSleepOp(rng)
		}
		var offA, offB int
		a := NewSleep(func() { offA++ })
		cut := rng.Intn(len(ops))
		for _, op := range ops[:cut] {
			op(a, &offA)
		}
		blob, _ := a.Save()
		b := NewSleep(func() { offB++ })
		if err := b.Restore(blob); err != nil {
			t.Fatal(err)
		}
		offB = offA
		for i, op := range ops[cut:] {
			if ga, gb := op(a, &offA), op(b, &offB); ga != gb {
				t.Fatalf("seed %d op %d: original %s, restored %s", seed, cut+i, ga, gb)
			}
		}
	}
}

func FuzzSleepRestore(f *testing.F) {
	s := NewSleep(nil)
	s.PortOut(0, 1, 3<<SleepTypeShift|SleepEnable)
	good, _ := s.Save()
	f.Add(good)
	f.Fuzz(func(t *testing.T, blob []byte) {
		s := NewSleep(nil)
		s.PortOut(0, 1, 2<<SleepTypeShift)
		before, _ := s.Save()
		if err := s.Restore(blob); err != nil {
			if !errors.Is(err, devices.ErrBadState) {
				t.Fatalf("err = %v, not ErrBadState", err)
			}
			if after, _ := s.Save(); !bytes.Equal(before, after) {
				t.Fatal("failed restore changed the device")
			}
			return
		}
		if again, _ := s.Save(); !bytes.Equal(again, blob) {
			t.Fatal("save after restore differs from the blob")
		}
	})
}
