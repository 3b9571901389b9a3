package qemutest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Packages whose tests also run as the kernel itself: `go test -c` builds a
// static binary, the boot layer wraps it, and the tests that execute
// privileged instructions (skipped on a host) run in ring 0.
var kernelTestPackages = []struct {
	pkg      string
	mustPass []string // tests that only run on bare metal and must not skip
}{
	{pkg: "cpu", mustPass: []string{"TestControlRegistersBareMetal", "TestMSRRoundTripBareMetal", "TestPortsBareMetal", "TestPCIConfigPortsBareMetal"}},
	{pkg: "board"},
	{pkg: "console"},
	{pkg: "selftest"},
	// In ring 0 without OSXSAVE the loops fall back to SSE2: test that path
	// where it is the one in use.
	{pkg: "ftmirror/pagediff"},
	{pkg: "ept"},
	{pkg: "pci", mustPass: []string{"TestEnumerateBareMetal"}},
}

func TestGoTestsInVM(t *testing.T) {
	root := repoRoot()
	ldflags, err := os.ReadFile(filepath.Join(root, "boot", "goldflags"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range kernelTestPackages {
		t.Run(tc.pkg, func(t *testing.T) {
			dir := filepath.Join(root, "build", "qemu-test", "gotest-"+strings.ReplaceAll(tc.pkg, "/", "-"))
			bin := filepath.Join(dir, filepath.Base(tc.pkg)+".test")
			build := exec.Command("go", "test", "-c", "-trimpath", "-ldflags", strings.TrimSpace(string(ldflags)), "-o", bin, "./"+tc.pkg)
			build.Dir = root
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go test -c ./%s: %v\n%s", tc.pkg, err, out)
			}
			wrap := exec.Command("bash", filepath.Join(root, "boot", "build.sh"), bin, dir)
			if out, err := wrap.CombinedOutput(); err != nil {
				t.Fatalf("boot/build.sh: %v\n%s", err, out)
			}
			m, err := startQEMUImage(t.Name(), filepath.Join(dir, "doppel.bin"), "-test.v")
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			subs, err := m.Expect(regexp.MustCompile(`(?m)^(PASS|FAIL)\r?$`), 3*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			out := m.Output()
			if subs[1] != "PASS" {
				t.Errorf("tests of ./%s failed in the VM:\n%s", tc.pkg, failures(out))
			}
			for _, name := range tc.mustPass {
				if !strings.Contains(out, "--- PASS: "+name) {
					t.Errorf("%s did not pass in ring 0 (skipped or missing)", name)
				}
			}
			if err := m.ExpectString("boot: exit 0", 30*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

// failures returns the lines of go test output that tell what failed.
func failures(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "--- FAIL") || strings.Contains(line, "_test.go:") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// startQEMUImage boots an arbitrary multiboot image built by boot/build.sh,
// on a CPU model with RDTSCP (IA32_TSC_AUX) and RDRAND, which QEMU's default
// model lacks.
func startQEMUImage(name, image, cmdline string) (*Machine, error) {
	return startQEMU(name, image, QEMUConfig{Cmdline: cmdline, SMP: 2, MemMiB: 3072, CPU: "qemu64,+rdtscp,+rdrand"})
}
