package selftest

import (
	"reflect"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/arch/x86/x86asm"
)

// TestSpinHasNoCalls guards the premise of preempt-spin: if the compiler
// put a call (a cooperative preemption point) in spin's loop, the test
// would pass without async preemption. It decodes spin's machine code
// and looks for a CALL other than the stack-growth one in the prologue's
// slow path. (It was a rate, "more than 1e8 iterations/s", which a loaded
// emulator missed.)
func TestSpinHasNoCalls(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("decodes amd64 code")
	}
	entry := reflect.ValueOf(spin).Pointer()
	fn := runtime.FuncForPC(entry)
	// The function's end: the first address that belongs to another one.
	end := entry
	for runtime.FuncForPC(end) == fn && end-entry < 4096 {
		end++
	}
	// The text is mapped in this process: read spin's bytes where they run.
	code := unsafe.Slice((*byte)(unsafe.Add(nil, entry)), end-entry)
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			t.Fatalf("decoding spin at +%#x: %v", off, err)
		}
		if inst.Op == x86asm.CALL {
			target := "?"
			if rel, ok := inst.Args[0].(x86asm.Rel); ok {
				if f := runtime.FuncForPC(entry + uintptr(off+inst.Len) + uintptr(int64(rel))); f != nil {
					target = f.Name()
				}
			}
			if target != "runtime.morestack_noctxt.abi0" && target != "runtime.morestack_noctxt" {
				t.Errorf("spin calls %s at +%#x: its loop has a preemption point", target, off)
			}
		}
		off += inst.Len
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("spin is %d bytes at %#x", len(code), entry)
	}
}
