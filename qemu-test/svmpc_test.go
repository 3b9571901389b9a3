package qemutest

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// The PC guests under AMD-V: doppel in QEMU TCG with -cpu max (SVM with
// nested paging, neither NRIP save nor decode assists) runs them with
// svm.PCCPU, and they must behave as under VT-x (TestBochsTestKernel) and
// bare QEMU (TestQEMUTestKernel).

// TestQEMUSVMTestKernel boots the multiboot1 test kernel as a doppel guest
// under QEMU TCG's SVM: the same lines as under `qemu -kernel`, with the
// CPU count and RAM size doppel's fw_cfg reports, the debug-exit status,
// and doppel's exit summary and shell afterwards.
func TestQEMUSVMTestKernel(t *testing.T) {
	const code, memMiB = 5, 64
	cmdline := fmt.Sprintf("doppel.guest=testkernel doppel.guest.mem=%dM doppel.reserve=128M", memMiB)
	t0 := time.Now()
	m, err := StartQEMU(t.Name(), QEMUConfig{Cmdline: cmdline, SMP: 2, MemMiB: 512, CPU: "max",
		Modules: []Module{{Path: imagePath("testkernel.bin"), Name: fmt.Sprintf("testkernel exit=%d", code)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The AMD-V path was taken, and says the CPU lacks NRIP save.
	if _, err := m.Expect(regexp.MustCompile(`AMD-V: multiboot[^\r\n]*NRIP save false`), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"testkernel: start",
		"testkernel: multiboot magic ok",
		"testkernel: cpus 1",
		fmt.Sprintf("testkernel: ram %d MiB", memMiB),
	} {
		if _, err := m.Expect(regexp.MustCompile(regexp.QuoteMeta(line)+`\r*\n`), 5*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	subs, err := m.Expect(regexp.MustCompile(`testkernel: mem_upper (\d+) KiB\r*\n`), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if upper, _ := strconv.Atoi(subs[1]); upper < (memMiB-2)*1024 || upper > (memMiB-1)*1024 {
		t.Errorf("mem_upper %d KiB for %d MiB of RAM", upper, memMiB)
	}
	if err := m.ExpectString(fmt.Sprintf("testkernel: exit %d", code), time.Minute); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`guest stopped after [^\r\n]*: debug exit, status %d \(code %d\)`, code*2+1, code)
	if _, err := m.Expect(regexp.MustCompile(want), time.Minute); err != nil {
		t.Fatal(err)
	}
	// The exits by SVM exit code, printed before the stop line. The test
	// kernel's exits are port accesses, whose next RIP the CPU gives in
	// EXITINFO2, so nothing needs decoding here.
	sum := regexp.MustCompile(`AMD-V vcpu 0: (\d+) #VMEXITs: IOIO=(\d+)[^\r\n]*; (\d+) instructions decoded`).FindStringSubmatch(m.Output())
	if sum == nil {
		t.Fatal("no AMD-V exit summary")
	}
	if n, _ := strconv.Atoi(sum[2]); n < 6 {
		t.Errorf("%s: fewer IOIO exits than lines printed", sum[0])
	}
	t.Logf("%s (wall time from QEMU start %v)", sum[0], time.Since(t0).Round(time.Millisecond))
	if err := m.ExpectString("console back to doppel's shell", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Type("help\r"); err != nil {
		t.Fatal(err)
	}
	if err := m.ExpectString("flags", time.Minute); err != nil {
		t.Fatal(err)
	}
}
