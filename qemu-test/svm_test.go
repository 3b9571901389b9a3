package qemutest

import (
	"fmt"
	"regexp"
	"testing"
	"time"
)

// The AMD-V side: the dirty-page test under QEMU TCG's SVM (nested paging,
// no NRIP save, so doppel decodes instruction lengths) and under a Bochs
// AMD model, and a CPU with neither VT-x nor SVM.

// bochsAMDModel is a Bochs 2.7 CPU model with SVM and nested paging.
const bochsAMDModel = "ryzen"

func svmDirtyCmdline(t *testing.T) string {
	seed := dirtySeed()
	t.Logf("doppel.dirtytest.seed=%d", seed)
	return fmt.Sprintf("doppel.guest=testguest doppel.dirtytest.rounds=%d doppel.dirtytest.seed=%d", dirtyRounds, seed)
}

// checkSVMRun asserts the SVM report before the rounds and the exit
// summary after them.
func checkSVMRun(t *testing.T, m *Machine, decodes bool) {
	t.Helper()
	if _, err := m.Expect(regexp.MustCompile(`svm: usable: NPT guests`), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	checkDirtyRun(t, m, "npt")
	re := regexp.MustCompile(`ept-dirty: guest stopped after \d+ #VMEXITs, 0 unclaimed port accesses, (\d+) instructions decoded by doppel`)
	subs := re.FindStringSubmatch(m.Output())
	if subs == nil {
		t.Fatalf("no exit summary matching %v", re)
	}
	if decodes && subs[1] == "0" {
		t.Errorf("no instruction was decoded by doppel on a CPU without NRIP save: %s", subs[0])
	}
	// The vCPU ran through vmm.Machine with svm.CPU: one entry per exit.
	mre := regexp.MustCompile(`ept-dirty: run by vmm.Machine with svm.CPU: (\d+) guest entries\s+ept-dirty: guest stopped after (\d+) #VMEXITs`)
	if ms := mre.FindStringSubmatch(m.Output()); ms == nil || ms[1] != ms[2] {
		t.Errorf("the vCPU did not run through vmm.Machine (or entries differ from exits): %q", ms)
	}
}

// TestQEMUDirtySVM: QEMU TCG with SVM and NPT (-cpu max).
func TestQEMUDirtySVM(t *testing.T) {
	m, err := StartQEMU(t.Name(), QEMUConfig{Cmdline: svmDirtyCmdline(t), SMP: 2, MemMiB: 512, CPU: "max", Modules: []Module{testguest()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkSVMRun(t, m, true)
}

// TestBochsDirtySVM: Bochs with an AMD model (SVM with nested paging).
func TestBochsDirtySVM(t *testing.T) {
	m, err := StartBochs(t.Name(), BochsConfig{Cmdline: svmDirtyCmdline(t), CPUs: 2, MemMiB: 512, Model: bochsAMDModel, Modules: []Module{testguest()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkSVMRun(t, m, false)
}

// TestQEMUNoVirt: a CPU with neither VT-x nor SVM (qemu64 without svm).
// doppel names both missing pieces and why, and keeps its shell.
func TestQEMUNoVirt(t *testing.T) {
	m, err := StartQEMU(t.Name(), QEMUConfig{Cmdline: "doppel.guest=testguest", SMP: 1, MemMiB: 512, CPU: "qemu64,-svm,-vmx", Modules: []Module{testguest()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, want := range []string{
		"vmx: no VT-x: CPUID.01H:ECX.VMX[bit 5] is 0",
		"svm: no AMD-V: CPUID Fn8000_0001_ECX[2] SVM=0",
		"neither VT-x nor AMD-V is usable: VT-x: no VT-x",
		"; AMD-V: no AMD-V (CPUID Fn8000_0001_ECX[2] SVM=0)",
		"the console stays up",
		prompt,
	} {
		if err := m.ExpectString(want, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Type("cpu\r"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Expect(regexp.MustCompile(`(?s)VMX: no \(CPUID.1:ECX\[5\]\), SVM: no.*`+prompt), 30*time.Second); err != nil {
		t.Error(err)
	}
}
