package qemutest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain builds the images once into imageDir (go build is incremental),
// so `go test ./qemu-test` alone also tests fresh code.
func TestMain(m *testing.M) {
	cmd := exec.Command("bash", filepath.Join(repoRoot(), "scripts", "image.sh"), imageDir())
	cmd.Dir = repoRoot()
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "qemu-test: building the image failed: %v\n", err)
		os.Exit(1)
	}
	// Which QEMU runs matters (issue 11): say it once.
	v, err := exec.Command(qemuBinary(), "--version").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "qemu-test: %s --version: %v\n", qemuBinary(), err)
		os.Exit(1)
	}
	fmt.Printf("qemu-test: %s (%s)\n", strings.SplitN(string(v), "\n", 2)[0], qemuBinary())
	os.Exit(m.Run())
}

var (
	selftestDone = regexp.MustCompile(`selftest: (ok|failed) (\d+)/(\d+)`)
	selftestFail = regexp.MustCompile(`selftest: FAIL [^\r\n]*`)
	prompt       = "doppel> "
)

// checkSelftest waits for the selftest summary and fails the test on any
// FAIL line or a failed summary, then waits for the machine to power off.
func checkSelftest(t *testing.T, m *Machine, timeout time.Duration) {
	t.Helper()
	subs, err := m.Expect(selftestDone, timeout)
	if err != nil {
		t.Fatal(err)
	}
	out := m.Output()
	for _, line := range selftestFail.FindAllString(out, -1) {
		t.Errorf("%s", line)
	}
	passed, _ := strconv.Atoi(subs[2])
	total, _ := strconv.Atoi(subs[3])
	if subs[1] != "ok" || passed != total || total < 7 {
		t.Errorf("selftest summary %q: want ok N/N with N >= 7", subs[0])
	}
	if err := m.Wait(60 * time.Second); err != nil {
		t.Errorf("no power-off after the selftest: %v", err)
	}
}

// s5Line is the boot layer's report of how it will power the machine off
// (boot/layer/acpi.c).
var s5Line = regexp.MustCompile(`boot: acpi: S5 is SLP_TYP (\d+)/(\d+) at PM1a_CNT (port|memory) (0x[0-9a-f]+)`)

// checkS5: the boot layer found in the firmware's FADT and DSDT the
// machine's PM1a_CNT register and \_S5 sleep type (0 on these chipsets).
// On QEMU (acpiOff) the power off that checkSelftest waited for went that
// way, since the emulators' fixed ports are written only where the tables
// say nothing: QEMU ended with status 0, not isa-debug-exit's 1 after.
// Bochs takes the "Shutdown" port before it.
func checkS5(t *testing.T, m *Machine, wantPort string, acpiOff bool) {
	t.Helper()
	s := s5Line.FindStringSubmatch(m.Output())
	if s == nil {
		t.Errorf("no %q line in the boot log", s5Line)
		return
	}
	if s[1] != "0" || s[3] != "port" || s[4] != wantPort {
		t.Errorf("%q: want SLP_TYP 0 at PM1a_CNT port %s", s[0], wantPort)
	}
	if acpiOff && m.Died() != "" {
		if st := exitStatus(m.err); st != 0 {
			t.Errorf("QEMU exit status %d after the power off, want 0 (the S5 write did not power it off)", st)
		}
	}
}

// goSees is doppel's report of the vector state its Go runtime found and
// the page-diff loops it picked (kernel.reportCPU) when the CPU has AVX2
// and, if avx512, AVX-512F.
func goSees(avx512 bool) string {
	loops := "avx2"
	if avx512 {
		loops = "avx512"
	}
	return fmt.Sprintf("Go sees: AVX true, AVX2 true, AVX-512F %v; page-diff loops: %s", avx512, loops)
}

// checkVectorState: doppel's Go found the AVX state the boot layer turned
// on (XCR0), and the selftest held it (regs) on more threads than CPUs
// across the layer's thread switches.
func checkVectorState(t *testing.T, m *Machine, regs string, avx512 bool) {
	t.Helper()
	out := m.Output()
	if want := goSees(avx512); !strings.Contains(out, want) {
		t.Errorf("doppel's Go runtime does not report %q", want)
	}
	re := regexp.MustCompile(`vector-state: (\d+) threads, (\d+) rounds held ([^;\r\n]+); the layer switched threads (\d+) times and sent (\d+) signals`)
	s := re.FindStringSubmatch(out)
	if s == nil {
		t.Error("no vector-state report from the selftest")
		return
	}
	t.Logf("%s", s[0])
	if s[3] != regs {
		t.Errorf("the selftest held %s, want %s", s[3], regs)
	}
}

func TestQEMUSelftest(t *testing.T) {
	// -cpu max: AVX2 (QEMU's TCG has it since 7.2) for vector-state.
	m, err := StartQEMU(t.Name(), QEMUConfig{Cmdline: "doppel.selftest=1", SMP: 2, MemMiB: 4608, CPU: "max"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkSelftest(t, m, 6*time.Minute)
	checkS5(t, m, "0x604", true) // QEMU's PIIX4 PM base, 0x600
	checkVectorState(t, m, "YMM0-15", false)
	// All RAM seen: QEMU puts 3 GiB below 4 GiB and the rest above it, so
	// the memory report must count RAM above 4 GiB too.
	re := regexp.MustCompile(`board: usable RAM (\d+) MiB`)
	subs := re.FindStringSubmatch(m.Output())
	if subs == nil {
		t.Fatalf("no %q line in the boot log", re)
	}
	if mib, _ := strconv.Atoi(subs[1]); mib < 4608-128 {
		t.Errorf("usable RAM %d MiB of 4608 MiB: memory above 4 GiB missed", mib)
	}
}

func TestQEMUShell(t *testing.T) {
	m, err := StartQEMU(t.Name(), QEMUConfig{SMP: 2, MemMiB: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	shellSession(t, m, 2*time.Minute)
	// poweroff takes the S5 path the firmware's tables give: QEMU ends
	// with status 0, not isa-debug-exit's 1 after it.
	if err := m.Type("poweroff\r"); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(60 * time.Second); err != nil {
		t.Fatalf("no power-off after poweroff: %v", err)
	}
	if st := exitStatus(m.err); st != 0 {
		t.Errorf("QEMU exit status %d after poweroff, want 0", st)
	}
}

// shellSession types help, mem, uptime, stats lock and a wrong command at
// the prompt and checks the answers.
func shellSession(t *testing.T, m *Machine, bootTimeout time.Duration) {
	t.Helper()
	if err := m.ExpectString(prompt, bootTimeout); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		typed string
		want  *regexp.Regexp
	}{
		{"help\r", regexp.MustCompile(`(?s)help.*mem.*cpu.*uptime.*log.*poweroff.*halt.*reboot.*` + prompt)},
		{"mem\r", regexp.MustCompile(`(?s)MemTotal.*` + prompt)},
		{"uptime\r", regexp.MustCompile(`(?s)up.*\d.*` + prompt)},
		// The layer's lock counts its holders; the shell's own reads and
		// writes are among them.
		{"stats lock\r", regexp.MustCompile(`(?s)holder +count +held ticks.*\n(sys|vec)\d+ +[1-9]\d* +\d+.*` + prompt)},
		{"nonsense\r", regexp.MustCompile(`(?s)nonsense.*(unknown|not found).*` + prompt)},
	} {
		if err := m.Type(step.typed); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Expect(step.want, 30*time.Second); err != nil {
			t.Errorf("after typing %q: %v", step.typed, err)
		}
	}
}

func TestQEMUBadFlags(t *testing.T) {
	m, err := StartQEMU(t.Name(), QEMUConfig{Cmdline: "doppel.selftest=maybe doppel.reserve=lots doppel.nosuchflag=1", SMP: 1, MemMiB: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, flag := range []string{"doppel.reserve", "doppel.selftest", "doppel.nosuchflag"} {
		re := regexp.MustCompile(`bad flag[^\r\n]*` + regexp.QuoteMeta(flag) + `|` + regexp.QuoteMeta(flag) + `[^\r\n]*(bad|unknown|invalid)`)
		if !re.MatchString(m.Output()) {
			if _, err := m.Expect(re, 90*time.Second); err != nil {
				t.Errorf("no clear message for %s: %v", flag, err)
			}
		}
	}
	// Boot goes on with defaults: the shell answers.
	if err := m.ExpectString(prompt, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestBochsSelftest(t *testing.T) {
	m, err := StartBochs(t.Name(), BochsConfig{Cmdline: "doppel.selftest=1", CPUs: 2, MemMiB: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkSelftest(t, m, 10*time.Minute)
	checkS5(t, m, "0xb004", false) // the Bochs BIOS's PIIX4 PM base, 0xB000
	checkVectorState(t, m, "YMM0-15, ZMM16-31, K1-7", true)
}

func TestBochsShell(t *testing.T) {
	m, err := StartBochs(t.Name(), BochsConfig{CPUs: 2, MemMiB: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	shellSession(t, m, 5*time.Minute)
}

// TestQEMUModuleCommandLines boots with a module whose command line is
// long but fits (it must arrive whole: a Linux guest's arguments ride on
// it) and one too long for the boot layer (it is cut with a warning on
// the console, never silently).
func TestQEMUModuleCommandLines(t *testing.T) {
	file := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(file, []byte("module payload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	words := func(prefix string, n int) string {
		s := prefix
		for i := 0; len(s) < n; i++ {
			s += fmt.Sprintf(" arg%03d=x", i)
		}
		return s
	}
	fits, tooLong := words("fits", 300), words("toolong", 600)
	m, err := StartQEMU(t.Name(), QEMUConfig{SMP: 1, MemMiB: 512, Modules: []Module{{Path: file, Name: fits}, {Path: file, Name: tooLong}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.ExpectString("boot: warning: a module's command line (modules lists it) is longer than 447 bytes", time.Minute); err != nil {
		t.Error(err)
	}
	if err := m.ExpectString(prompt, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Type("modules\r"); err != nil {
		t.Fatal(err)
	}
	// The listing names the file by its path, then the command line.
	if _, err := m.Expect(regexp.MustCompile(regexp.QuoteMeta(file+" "+fits)+`\r?\n`), 30*time.Second); err != nil {
		t.Errorf("the %d-byte command line did not arrive whole: %v", len(fits), err)
	}
	if _, err := m.Expect(regexp.MustCompile(regexp.QuoteMeta(file+" toolong arg000=x")), 30*time.Second); err != nil {
		t.Errorf("the cut command line is not listed: %v", err)
	}
}

// TestQEMUStartFailureSaysWhy starts QEMU with a device it does not
// have: QEMU exits at once, and the error from Expect must carry QEMU's
// own complaint and exit status, which go to its standard error, not to
// the console.
func TestQEMUStartFailureSaysWhy(t *testing.T) {
	m, err := StartQEMU(t.Name(), QEMUConfig{SMP: 1, MemMiB: 128, Extra: []string{"-device", "doppel-no-such-nic"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Expect(regexp.MustCompile(`never printed`), time.Minute)
	if err == nil {
		t.Fatal("Expect matched on a QEMU that could not start")
	}
	for _, want := range []string{"console closed", "exit status 1", "doppel-no-such-nic"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	t.Log(err)
}
