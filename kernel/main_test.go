package main

import (
	"github.com/doppel-ft/doppel/board"
	"regexp"
	"strings"
	"testing"
)

// The kernel on a host: boot steps, flag errors, the shell over a byte
// stream, and the self-test run with a small churn.
func TestRun(t *testing.T) {
	if board.OnBareMetal() {
		// It types halt and reboot; qemu-test covers the kernel there.
		t.Skip("host-only: drives the shell's halt and reboot")
	}
	stamp := `\[ *\d+\.\d{6}\] `
	tests := []struct {
		name     string
		args     []string
		input    string
		wantCode int
		want     []string // regexps, each must match a line
		dontWant []string
	}{
		{
			name:  "boot then shell until input ends",
			args:  []string{"GODEBUG=x=1", "console=ttyS0"},
			input: "uptime\ncpu\nflags\nhalt\nreboot\nnosuch\n",
			want: []string{
				`^` + stamp + `kernel: doppel \(go1\.\d+.* linux/amd64\) as a Linux process`,
				`^` + stamp + `cpu: \S+ family \d+ model \d+ stepping \d+$`,
				`^` + stamp + `cpu: VMX: (yes|no) \(CPUID.1:ECX\[5\]\), SVM: (yes|no)`,
				`^` + stamp + `mem: meminfo: MemTotal \S+ MemFree \S+$`,
				`^` + stamp + `mem: no memory map \(not on bare metal\)$`,
				`^doppel> up \S+ \(\d+\.\d{6} s\)$`,
				`^doppel> \S+ family \d+ model`,
				`^doppel\.selftest +0 +default +run the boot self-tests`,
				`^halt: board: halt: not on bare metal`,
				`^reboot: board: restart: not on bare metal`,
				`^doppel> unknown command "nosuch": try help$`,
				`^` + stamp + `kernel: console input ended$`,
			},
			dontWant: []string{`board: (bad|unknown) flag`},
		},
		{
			name:  "bad flags are reported and boot goes on",
			args:  []string{"doppel.selftest=maybe", "doppel.bogus=1", "doppel.reserve=lots", "doppel.guest=linux"},
			input: "",
			want: []string{
				`^` + stamp + `board: bad flag doppel.selftest=maybe: want 0 or 1$`,
				`^` + stamp + `board: bad flag doppel.bogus=1: unknown doppel flag`,
				`^` + stamp + `board: bad flag doppel.reserve=lots: want a size`,
				`^` + stamp + `guest: doppel.guest=linux: .*no such file or directory$`,
				`^doppel> $`,
			},
		},
		{
			name: "selftest runs everything and returns the result",
			args: []string{"doppel.selftest=1", "doppel.selftest.churn=32M"},
			want: []string{
				`^` + stamp + `selftest: running 9 tests \(churn 32M,`,
				`^selftest: PASS layer-files$`,
				`^selftest: PASS ping-pong$`,
				`^selftest: PASS alloc-churn$`,
				`^selftest: PASS preempt-spin$`,
				`^selftest: PASS vector-state$`,
				`^selftest: ok 9/9$`,
			},
			dontWant: []string{`^doppel> `, `FAIL`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			code := run(tt.args, strings.NewReader(tt.input), &out)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			lines := strings.Split(out.String(), "\n")
			for _, w := range tt.want {
				re := regexp.MustCompile(w)
				found := false
				for _, l := range lines {
					found = found || re.MatchString(l)
				}
				if !found {
					t.Errorf("no line matches %s", w)
				}
			}
			for _, w := range tt.dontWant {
				if re := regexp.MustCompile(`(?m)` + w); re.MatchString(out.String()) {
					t.Errorf("output matches %s", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out.String())
			}
		})
	}
}

func TestSubsystemsNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range subsystems {
		if s.name == "" || s.start == nil || seen[s.name] {
			t.Errorf("bad subsystem entry %+v", s)
		}
		seen[s.name] = true
	}
	if !seen["guest"] {
		t.Error("no guest hook in the subsystem table")
	}
}
