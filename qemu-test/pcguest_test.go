package qemutest

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestBochsTestKernel boots the multiboot1 test kernel (testkernels/) as
// a doppel guest under Bochs: it must print what it prints under `qemu
// -kernel` (TestQEMUTestKernel), with the CPU count and RAM size doppel's
// fw_cfg reports, end through the debug-exit port with its code, and
// doppel must report that and give the console back to its shell.
func TestBochsTestKernel(t *testing.T) {
	const code, memMiB = 5, 64
	cmdline := fmt.Sprintf("doppel.guest=testkernel doppel.guest.mem=%dM doppel.reserve=128M", memMiB)
	m, err := StartBochs(t.Name(), BochsConfig{Cmdline: cmdline, CPUs: 2, MemMiB: 512,
		Modules: []Module{{Path: imagePath("testkernel.bin"), Name: fmt.Sprintf("testkernel exit=%d", code)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
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
	if _, err := m.Expect(regexp.MustCompile(`guest: \d+ exits: `), time.Minute); err != nil {
		t.Fatal(err)
	}
	// doppel's shell is back and answers.
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
