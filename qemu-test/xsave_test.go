package qemutest

import (
	"testing"
	"time"
)

// TestQEMUSelftestXSAVE runs the self-tests on a CPU with XSAVE, AVX and
// AVX2 (QEMU 7.2's TCG "max" model): the boot layer then turns on
// CR4.OSXSAVE and XCR0 and switches threads with XSAVE/XRSTOR, and Go's
// feature detection in ring 0 must find AVX2. The self-tests (threads,
// signals, preemption) check that the state switch breaks nothing.
func TestQEMUSelftestXSAVE(t *testing.T) {
	m, err := StartQEMU(t.Name(), QEMUConfig{Cmdline: "doppel.selftest=1", SMP: 2, MemMiB: 1024, CPU: "max"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.ExpectString("Go sees: AVX true, AVX2 true", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	checkSelftest(t, m, 6*time.Minute)
}
