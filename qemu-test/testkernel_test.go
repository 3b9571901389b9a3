package qemutest

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestQEMUTestKernel boots the multiboot1 test kernel (testkernels/) with
// plain `qemu-system-x86_64 -kernel`, no doppel: the baseline a doppel run
// of the same kernel is compared with. The kernel prints the CPU count and
// RAM size it reads from fw_cfg and the multiboot mem_upper, then writes
// the exit code from its command line to the debug-exit port; QEMU exits
// with status code*2+1.
func TestQEMUTestKernel(t *testing.T) {
	for _, tc := range []struct{ cpus, memMiB, code int }{
		{1, 128, 0},
		{3, 200, 21},
	} {
		t.Run(fmt.Sprintf("cpus%d_mem%d_exit%d", tc.cpus, tc.memMiB, tc.code), func(t *testing.T) {
			m, err := runQEMU(t.Name(), []string{
				"-kernel", imagePath("testkernel.bin"), "-append", fmt.Sprintf("exit=%d", tc.code),
				"-smp", strconv.Itoa(tc.cpus), "-m", strconv.Itoa(tc.memMiB),
				"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
				"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
			})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			want := []string{
				"testkernel: start",
				"testkernel: multiboot magic ok",
				fmt.Sprintf("testkernel: cpus %d", tc.cpus),
				fmt.Sprintf("testkernel: ram %d MiB", tc.memMiB),
			}
			for _, line := range want {
				if _, err := m.Expect(regexp.MustCompile(regexp.QuoteMeta(line)+`\r?\n`), 60*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			// mem_upper is the RAM from 1 MiB up, less what the firmware
			// keeps at the top (QEMU's SeaBIOS: 128 KiB, observed).
			subs, err := m.Expect(regexp.MustCompile(`testkernel: mem_upper (\d+) KiB\r?\n`), 60*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			upper, _ := strconv.Atoi(subs[1])
			if max := (tc.memMiB - 1) * 1024; upper > max || upper < max-1024 {
				t.Errorf("mem_upper %d KiB, want within 1 MiB below %d KiB", upper, max)
			}
			if err := m.ExpectString(fmt.Sprintf("testkernel: exit %d", tc.code), 60*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := m.Wait(60 * time.Second); err != nil {
				t.Fatal(err)
			}
			if got, want := exitStatus(m.err), tc.code*2+1; got != want {
				t.Errorf("QEMU exit status %d (%v), want %d = %d*2+1", got, m.err, want, tc.code)
			}
		})
	}
}

// exitStatus is a finished emulator's exit status (0 for a nil error, -1
// if it did not exit normally).
func exitStatus(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}
