package dirtytest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/vmm"
)

// This file runs on bare metal only: the host thread that proves the timer
// slices the vCPU's CPU, and the failed VM entries provoked on purpose.

// hostTicker is a goroutine on its own thread, pinned to the vCPU's CPU,
// that wakes every millisecond and counts. While the guest spins, that
// CPU runs the guest until the host timer forces an external-interrupt
// exit; the ticker advances only if the boot layer then switches to it.
type hostTicker struct {
	ticks atomic.Uint64
	done  atomic.Bool
}

// tickerPeriod is the ticker's sleep: shorter than the layer's 4 ms slice.
const tickerPeriod = time.Millisecond

func startHostTicker(cpu int) *hostTicker {
	t := &hostTicker{}
	go func() {
		if err := vmm.PinThread(cpu); err != nil {
			return // no ticks: the spin phase fails and says so
		}
		for !t.done.Load() {
			time.Sleep(tickerPeriod)
			t.ticks.Add(1)
		}
		// The thread goes back to the scheduler's pool, free to run
		// anywhere (no thread exit needed from the layer).
		_ = vmm.UnpinThread()
	}()
	return t
}

func (t *hostTicker) stop() { t.done.Store(true) }

// Guest CR0 bits, SDM Vol. 3A 2.5.
const (
	cr0PE = 1 << 0
	cr0PG = 1 << 31
	// badCR3TargetCount exceeds the 4 CR3-target values every CPU
	// supports (IA32_VMX_MISC bits 24:16 report fewer or 4).
	badCR3TargetCount = 255
)

// entryProvocation breaks one VMCS field before a VM entry, which must
// then fail with a message that contains want.
type entryProvocation struct {
	what  string
	field vmm.Field
	value func(old uint64) uint64
	want  string
}

var entryProvocations = []entryProvocation{
	// SDM Vol. 3C 27.3.1.1: CR0.PG=1 needs CR0.PE=1 even for an
	// unrestricted guest: a VM exit "VM-entry failure, invalid guest
	// state" (exit reason 33 with bit 31).
	{"guest CR0.PG=1 with PE=0", vmm.GuestCR0, func(v uint64) uint64 { return (v | cr0PG) &^ cr0PE }, "invalid guest state"},
	// 27.2.1.1: the CR3-target count must not exceed 4: VMfailValid with
	// VM-instruction error 7.
	{"CR3-target count 255", vmm.CR3TargetCount, func(uint64) uint64 { return badCR3TargetCount }, "VM-instruction error 7: VM entry with invalid control field(s)"},
}

// provokeEntryFailures re-enters the stopped guest with broken fields, one
// at a time, and checks that each entry fails with a message naming why.
func provokeEntryFailures(out io.Writer, h *vmm.HWVCPU, v *vmm.VCPU) error {
	var errs []error
	for _, p := range entryProvocations {
		old, err := h.VMCS.Read(p.field)
		if err != nil {
			return err
		}
		if err := h.VMCS.Write(p.field, p.value(old)); err != nil {
			return err
		}
		runErr := h.Run(v)
		fmt.Fprintf(out, "vmexit: provoked entry failure (%s): %v\n", p.what, runErr)
		if err := h.VMCS.Write(p.field, old); err != nil {
			return err
		}
		if !errors.Is(runErr, vmm.ErrEntryFailed) || !strings.Contains(runErr.Error(), p.want) {
			msg := fmt.Sprintf("entry with %s: got %v, want a failed entry naming %q", p.what, runErr, p.want)
			fmt.Fprintf(out, "vmexit: FAIL %s\n", msg)
			errs = append(errs, errors.New("dirtytest: vmexit: "+msg))
		}
	}
	return errors.Join(errs...)
}
