package qemutest

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

const dirtyRounds = 50

// testguest is the in-tree dirty-tracking guest, handed over as a module.
func testguest() Module {
	return Module{Path: imagePath("testguest.bin"), Name: "testguest"}
}

// dirtySeed picks a fresh first-round seed each run (every round derives its
// own from it); it is logged so a failure can be replayed with the flag.
func dirtySeed() uint32 { return uint32(time.Now().UnixNano()>>10) | 1 }

// checkDirtyRun asserts the whole dirty-tracking run: the mode, an exact
// harvest in every round, the isolation probes, and the power-off.
func checkDirtyRun(t *testing.T, m *Machine, mode string) {
	t.Helper()
	start := regexp.MustCompile(`ept-dirty: guest "testguest" \d+ MiB, mode=` + mode)
	if _, err := m.Expect(start, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < dirtyRounds; k++ {
		re := regexp.MustCompile(fmt.Sprintf(`ept-dirty: (exact|mismatch) round=%d [^\r\n]*`, k))
		subs, err := m.Expect(re, 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if subs[1] != "exact" {
			t.Errorf("%s", subs[0])
		}
	}
	if _, err := m.Expect(regexp.MustCompile(`ept-isolation: ok probes=\d+`), time.Minute); err != nil {
		t.Error(err)
	}
	if err := m.ExpectString(fmt.Sprintf("ept-dirty: done %d/%d", dirtyRounds, dirtyRounds), time.Minute); err != nil {
		t.Error(err)
	}
	if strings.Contains(m.Output(), "ept-dirty: mismatch") {
		t.Error("a round's harvest missed pages the guest wrote")
	}
	if err := m.Wait(60 * time.Second); err != nil {
		t.Errorf("no power-off after the dirty test: %v", err)
	}
}

func bochsDirty(t *testing.T, extra, mode string) {
	seed := dirtySeed()
	t.Logf("doppel.dirtytest.seed=%d", seed)
	cmdline := fmt.Sprintf("doppel.guest=testguest doppel.dirtytest.rounds=%d doppel.dirtytest.seed=%d %s",
		dirtyRounds, seed, extra)
	m, err := StartBochs(t.Name(), BochsConfig{Cmdline: cmdline, CPUs: 2, MemMiB: 512, Modules: []Module{testguest()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkDirtyRun(t, m, mode)
}

// The Skylake-X model has PML, so the default harvest drains the PML log.
func TestBochsDirtyPML(t *testing.T) { bochsDirty(t, "", "pml") }

// doppel.ept.scan=1 forces the D-bit scan even though PML is there.
func TestBochsDirtyScan(t *testing.T) { bochsDirty(t, "doppel.ept.scan=1", "scan") }

// Under QEMU TCG there is no VT-x: doppel must say so and keep its console.
func TestQEMUNoVMX(t *testing.T) {
	m, err := StartQEMU(t.Name(), QEMUConfig{Cmdline: "doppel.guest=testguest", SMP: 1, MemMiB: 512, Modules: []Module{testguest()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.ExpectString("vmx: no VT-x", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.ExpectString(prompt, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Type("cpu\r"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Expect(regexp.MustCompile(`(?s)VMX: no.*`+prompt), 30*time.Second); err != nil {
		t.Error(err)
	}
}
