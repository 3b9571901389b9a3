package qemutest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vmexitRounds keeps the dirty part short: the VM-exit phases come after.
const vmexitRounds = 10

// TestBochsVMExit runs the dirty test's rounds, then the VM-exit phases
// (doppel.vmexittest=1, vmm/dirtytest/vmexit.go): CPUID as the guest sees
// it, a spin with IF=0 that must still give the host its CPU back, a spin
// with IF=1 during which the host timer must force external-interrupt
// exits and a host thread pinned to the vCPU's CPU must keep running, a
// triple fault on purpose that stops the guest but not doppel, and two
// failed VM entries provoked on purpose that must name their error.
func TestBochsVMExit(t *testing.T) {
	seed := dirtySeed()
	t.Logf("doppel.dirtytest.seed=%d", seed)
	cmdline := fmt.Sprintf("doppel.guest=testguest doppel.dirtytest.rounds=%d doppel.dirtytest.seed=%d doppel.vmexittest=1",
		vmexitRounds, seed)
	m, err := StartBochs(t.Name(), BochsConfig{Cmdline: cmdline, CPUs: 2, MemMiB: 512, Modules: []Module{testguest()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	expect := func(re string, timeout time.Duration) []string {
		t.Helper()
		subs, err := m.Expect(regexp.MustCompile(re), timeout)
		if err != nil {
			t.Fatal(err)
		}
		return subs
	}
	expect(`ept-dirty: guest "testguest" \d+ MiB, mode=pml`, 5*time.Minute)
	expect(fmt.Sprintf(`ept-dirty: done %d/%d`, vmexitRounds, vmexitRounds), 2*time.Minute)
	expect(`vmexit: cpuid ok leaf1\.ecx=0x[0-9a-f]+ hypervisor=1 vmx=0 leaf0x40000000\.eax=0x[0-9a-f]+ vendor="doppel-ft-hv"`, time.Minute)
	t.Logf("%s", expect(`vmexit: cpuid exit round trip \d+ cycles \(\d+ exits\)`, time.Minute)[0])
	// With IF=0 the host must still get its CPU back (external-interrupt
	// exits on hardware, the VMX-preemption timer under Bochs).
	subs := expect(`vmexit: spin with IF=0: external-interrupt exits=(\d+) preemption-timer exits=(\d+) host-ticks=\d+`, 2*time.Minute)
	ext0, _ := strconv.Atoi(subs[1])
	pt0, _ := strconv.Atoi(subs[2])
	t.Logf("%s", subs[0])
	if ext0+pt0 == 0 {
		t.Errorf("IF=0 spin without a single exit: %s", subs[0])
	}
	subs = expect(`vmexit: external-interrupt exits=(\d+) host-ticks=(\d+) during guest spin`, 2*time.Minute)
	ext, _ := strconv.Atoi(subs[1])
	ticks, _ := strconv.Atoi(subs[2])
	t.Logf("external-interrupt exits=%d host-ticks=%d", ext, ticks)
	if ext == 0 || ticks == 0 {
		t.Errorf("spin: %s", subs[0])
	}
	expect(`vmexit: guest triple fault at rip=0x[0-9a-f]+ \(guest stopped\)`, time.Minute)
	expect(`vmexit: provoked entry failure \(guest CR0\.PG=1 with PE=0\): vmm: VM entry failed: invalid guest state, qualification \d+`, time.Minute)
	expect(`vmexit: provoked entry failure \(CR3-target count 255\): [^\r\n]*VM-instruction error 7: VM entry with invalid control field\(s\)`, time.Minute)
	expect(`vmexit: all phases passed`, time.Minute)
	// The kernel outlived its guest: the Go side goes on and powers off.
	expect(`vmm: guest finished; powering off`, time.Minute)
	if out := m.Output(); strings.Contains(out, "vmexit: FAIL") || strings.Contains(out, "ept-dirty: mismatch") {
		t.Errorf("failure lines in the output:\n%s", m.Tail(3000))
	}
	if err := m.Wait(60 * time.Second); err != nil {
		t.Errorf("no power-off after the VM-exit test: %v", err)
	}
}
