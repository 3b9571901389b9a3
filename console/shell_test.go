package console

import (
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/board"
)

// fakeSystem is a System whose answers are fixed strings, recording power
// requests.
func fakeSystem(powered *[]board.PowerAction) System {
	log := NewLog(nil, 16, fakeClock(time.Second, time.Second))
	log.Printf("kernel", "one")
	log.Printf("kernel", "two")
	log.Printf("kernel", "three")
	text := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	return System{
		Log:          log,
		Uptime:       func() time.Duration { return 3723*time.Second + 500*time.Millisecond },
		CPUReport:    text("GenuineIntel family 6\n"),
		MemoryReport: text("MemTotal: 4G\n"),
		Modules:      text("0x4000000-0x4a00000      10M testguest\n"),
		Stats:        func() ([]byte, error) { return nil, errors.New("open /proc/doppel/stats: no such file or directory") },
		LockStats: func() ([]board.LockHolder, error) {
			return []board.LockHolder{{Holder: "vec48", Count: 10, Held: 500, Waits: 1, Waited: 20}, {Holder: "sys1", Count: 4, Held: 4000, Waits: 3, Waited: 900}}, nil
		},
		Power: func(a board.PowerAction) error {
			*powered = append(*powered, a)
			return board.ErrNotBareMetal
		},
	}
}

func TestShell(t *testing.T) {
	const prompt = "doppel> "
	tests := []struct {
		name    string
		echo    bool
		input   string
		want    string
		powered []board.PowerAction
	}{
		{
			name:  "empty input prints one prompt",
			input: "",
			want:  prompt,
		},
		{
			name:  "echo, CR as enter, command output",
			echo:  true,
			input: "cpu\r",
			want:  prompt + "cpu\nGenuineIntel family 6\n" + prompt,
		},
		{
			name:  "LF as enter, CR LF is one enter",
			input: "mem\nmodules\r\n",
			want:  prompt + "MemTotal: 4G\n" + prompt + "0x4000000-0x4a00000      10M testguest\n" + prompt,
		},
		{
			name:  "backspace and DEL erase, echoed as BS SP BS",
			echo:  true,
			input: "cpx\x7fu\r" + "\x08\x08\r",
			want:  prompt + "cpx\b \bu\nGenuineIntel family 6\n" + prompt + "\n" + prompt,
		},
		{
			name:  "ctrl-U erases the line, ctrl-C cancels it",
			echo:  true,
			input: "xy\x15cpu\r" + "halt\x03",
			want:  prompt + "xy\b \b\b \bcpu\nGenuineIntel family 6\n" + prompt + "halt^C\n" + prompt,
		},
		{
			name:  "arrow keys and other escapes are swallowed",
			echo:  true,
			input: "\x1b[Acp\x1b[1;5Du\x1bOA\r",
			want:  prompt + "cpu\nGenuineIntel family 6\n" + prompt,
		},
		{
			name:  "blank lines and extra spaces",
			input: "\n   \n  uptime   \n",
			want:  prompt + prompt + prompt + "up 1h2m3s (3723.500000 s)\n" + prompt,
		},
		{
			name:  "unknown command",
			input: "reboto\n",
			want:  prompt + "unknown command \"reboto\": try help\n" + prompt,
		},
		{
			name:  "log with and without a count",
			input: "log 2\nlog\nlog x\n",
			want: prompt + "[    2.000000] kernel: two\n[    3.000000] kernel: three\n" + prompt +
				"[    1.000000] kernel: one\n[    2.000000] kernel: two\n[    3.000000] kernel: three\n" + prompt +
				"log: bad count \"x\": want a number of lines\n" + prompt,
		},
		{
			name:  "a failing command reports its error",
			input: "stats\nflags\n",
			want: prompt + "stats: open /proc/doppel/stats: no such file or directory\n" + prompt +
				"flags: not available\n" + prompt,
		},
		{
			name:  "stats lock, longest holder first",
			input: "stats lock\nstats locks\n",
			want: prompt + "holder        count     held ticks   per hold      waits   waited ticks\n" +
				"sys1              4           4000       1000          3            900\n" +
				"vec48            10            500         50          1             20\n" + prompt +
				"stats: want no argument or \"lock\"\n" + prompt,
		},
		{
			name:  "poweroff, halt and reboot refused off bare metal",
			input: "poweroff\nhalt\nreboot\n",
			want: prompt + "power off...\npoweroff: not on bare metal (no /proc/doppel/memmap)\n" + prompt +
				"halt...\nhalt: not on bare metal (no /proc/doppel/memmap)\n" + prompt +
				"restart...\nreboot: not on bare metal (no /proc/doppel/memmap)\n" + prompt,
			powered: []board.PowerAction{board.PowerOff, board.Halt, board.Restart},
		},
		{
			name:  "up arrow recalls, down arrow walks back to an empty line",
			echo:  true,
			input: "cpu\r" + "mem\r" + "\x1b[A\x1b[A\r" + "x\x1b[A\x1b[B\x1b[B\x1b[Bmem\r",
			want: prompt + "cpu\nGenuineIntel family 6\n" +
				prompt + "mem\nMemTotal: 4G\n" +
				prompt + "mem\b \b\b \b\b \bcpu\nGenuineIntel family 6\n" +
				// x, up: cpu (the last line); down: empty; down, down: no-ops.
				prompt + "x\b \bcpu\b \b\b \b\b \bmem\nMemTotal: 4G\n" + prompt,
		},
		{
			name:  "control and high bytes are ignored",
			echo:  true,
			input: "c\x01\x80p\xffu\r",
			want:  prompt + "cpu\nGenuineIntel family 6\n" + prompt,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			var powered []board.PowerAction
			sh := &Shell{In: strings.NewReader(tt.input), Out: &out, Echo: tt.echo, Commands: Builtins(fakeSystem(&powered))}
			if err := sh.Run(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if out.String() != tt.want {
				t.Errorf("output:\n%q\nwant:\n%q", out.String(), tt.want)
			}
			if len(powered) != len(tt.powered) || (len(powered) > 0 && powered[0] != tt.powered[0]) {
				t.Errorf("power requests %v, want %v", powered, tt.powered)
			}
		})
	}
}

func TestShellHelpListsEveryCommand(t *testing.T) {
	var out strings.Builder
	var powered []board.PowerAction
	cmds := Builtins(fakeSystem(&powered))
	sh := &Shell{In: strings.NewReader("help\n"), Out: &out, Commands: cmds}
	if err := sh.Run(); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(cmds, Command{Name: "help"}) {
		if !strings.Contains(out.String(), "\n  "+c.Name) && !strings.HasPrefix(out.String(), "doppel>   "+c.Name) {
			t.Errorf("help lacks %s:\n%s", c.Name, out.String())
		}
	}
	// The emulator tests (qemu-test/boot_test.go) expect help to list
	// these in this order.
	order := regexp.MustCompile(`(?s)help.*mem.*cpu.*uptime.*log.*halt.*reboot.*stats`)
	if !order.MatchString(out.String()) {
		t.Errorf("help does not list help, mem, cpu, uptime, log, halt, reboot, stats in order:\n%s", out.String())
	}
}

func TestShellLineLimitAndExit(t *testing.T) {
	var out strings.Builder
	exit := Command{Name: "exit", Run: func(io.Writer, []string) error { return ErrExit }}
	long := strings.Repeat("x", MaxLine+2)
	sh := &Shell{In: strings.NewReader(long + "\n" + "exit\nnever\n"), Out: &out, Echo: true, Commands: []Command{exit}}
	if err := sh.Run(); err != nil {
		t.Fatal(err)
	}
	want := "doppel> " + strings.Repeat("x", MaxLine) + "\a\a\n" +
		"unknown command \"" + strings.Repeat("x", MaxLine) + "\": try help\n" + "doppel> exit\n"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("uart overrun") }

func TestShellReadError(t *testing.T) {
	sh := &Shell{In: failingReader{}, Out: io.Discard}
	if err := sh.Run(); err == nil || !strings.Contains(err.Error(), "uart overrun") {
		t.Errorf("Run = %v, want the read error", err)
	}
}

func TestMemoryReportOnThisMachine(t *testing.T) {
	var out strings.Builder
	if err := MemoryReport(&out); err != nil {
		t.Fatalf("MemoryReport: %v\n%s", err, out.String())
	}
	for _, want := range []string{"MemTotal:", "MemFree:", "go: sys ", "memory map"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHistoryBounded(t *testing.T) {
	e := lineEditor{out: io.Discard}
	for i := 0; i < historySize+5; i++ {
		e.remember(strings.Repeat("x", i%3+1)) // x, xx, xxx, x, ...
		e.remember(strings.Repeat("x", i%3+1)) // a repeat is not kept
	}
	e.remember("   ")
	if len(e.history) != historySize || e.recall != historySize {
		t.Fatalf("history holds %d lines, recall %d; want %d", len(e.history), e.recall, historySize)
	}
	for i := 1; i < len(e.history); i++ {
		if e.history[i] == e.history[i-1] || strings.TrimSpace(e.history[i]) == "" {
			t.Fatalf("history %q keeps a repeat or a blank line", e.history)
		}
	}
}
