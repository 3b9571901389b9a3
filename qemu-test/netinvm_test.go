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

// TestNetStackInVM runs the host tests of the network stack and of the FT
// link (gVisor's tcpip over in-memory NICs; the engine with its synthetic
// guest across two stacks, kill points and a lossy wire) as the kernel
// itself under QEMU TCG: gVisor and the engine in ring 0 on the boot layer.
// It needs no NIC driver.
func TestNetStackInVM(t *testing.T) {
	for _, tc := range []struct{ pkg, run string }{
		{"net/netstack", "TestTCPOverWire|TestBackPressure|TestProbe|TestDial|TestUnreachable"},
		{"ft", "TestSimKillPoints|TestSimLossyWire"},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			m := bootTestBinary(t, tc.pkg, "FT_TEST_SMALL=1 -test.v -test.run "+tc.run)
			defer m.Close()
			subs, err := m.Expect(regexp.MustCompile(`(?m)^(PASS|FAIL)\r?$`), 8*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if subs[1] != "PASS" {
				t.Errorf("tests of ./%s failed in the VM:\n%s", tc.pkg, failures(m.Output()))
			}
			if n := strings.Count(m.Output(), "--- PASS: "); n < 3 {
				t.Errorf("only %d tests passed", n)
			}
			if err := m.ExpectString("boot: exit 0", 30*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

// bootTestBinary builds pkg's tests as a kernel (go test -c wrapped by
// boot/build.sh) and boots it under QEMU with args on its command line.
func bootTestBinary(t *testing.T, pkg, args string) *Machine {
	t.Helper()
	root := repoRoot()
	ldflags, err := os.ReadFile(filepath.Join(root, "boot", "goldflags"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "build", "qemu-test", "gotest-"+strings.ReplaceAll(pkg, "/", "-"))
	bin := filepath.Join(dir, filepath.Base(pkg)+".test")
	build := exec.Command("go", "test", "-c", "-trimpath", "-ldflags", strings.TrimSpace(string(ldflags)), "-o", bin, "./"+pkg)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c ./%s: %v\n%s", pkg, err, out)
	}
	if out, err := exec.Command("bash", filepath.Join(root, "boot", "build.sh"), bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("boot/build.sh: %v\n%s", err, out)
	}
	m, err := startQEMUImage(t.Name(), filepath.Join(dir, "doppel.bin"), args)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
