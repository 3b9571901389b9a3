package selftest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/board"
)

// hostConfig keeps the run cheap (64M of churn) and enables the bare-metal
// checks when the test binary runs as a kernel on the boot layer. On a
// shared Linux host a late wake-up says only that the machine is busy, so
// there sleep-tsc checks just that Sleep never returns early and that the
// two clocks agree; on the boot layer a wake-up 25 ms late is doppel's.
func hostConfig(t *testing.T) Config {
	cfg := Config{ChurnBytes: 64 << 20, SleepSlack: 10 * time.Second, Timeout: 60 * time.Second,
		BareMetal: board.OnBareMetal(), Logf: t.Logf}
	if cfg.BareMetal {
		cfg.SleepSlack = 25 * time.Millisecond
		cpus, err := board.ReadCPUs()
		if err != nil {
			t.Fatal(err)
		}
		cfg.CPUs = cpus
	}
	return cfg
}

// TestEachOnHost runs every real self-test on this machine: a Linux host,
// where the runtime's promises hold, or the boot layer. Each must pass.
func TestEachOnHost(t *testing.T) {
	for _, tt := range All {
		t.Run(tt.Name, func(t *testing.T) {
			cfg := hostConfig(t)
			if err := runOne(&cfg, tt); err != nil {
				t.Errorf("%s: %v", tt.Name, err)
			}
		})
	}
}

func TestRunOutput(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	tests := []Test{
		{"good", func(context.Context, *Config) error { return nil }},
		{"bad", func(context.Context, *Config) error { return errors.New("wrong answer") }},
		{"panics", func(context.Context, *Config) error { panic("boom") }},
		{"honours-ctx", func(ctx context.Context, _ *Config) error { <-ctx.Done(); return errors.New("gave up") }},
		{"hangs", func(context.Context, *Config) error { <-block; return nil }},
	}
	var out strings.Builder
	start := time.Now()
	res := Run(&out, Config{Timeout: 50 * time.Millisecond}, tests)
	want := "selftest: PASS good\n" +
		"selftest: FAIL bad: wrong answer\n" +
		"selftest: FAIL panics: panic: boom\n" +
		"selftest: FAIL honours-ctx: gave up\n" +
		"selftest: FAIL hangs: timed out after 50ms\n" +
		"selftest: failed 4/5\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if res.OK() || res.Passed != 1 || res.Total != 5 || strings.Join(res.Failed, ",") != "bad,panics,honours-ctx,hangs" {
		t.Errorf("result %+v", res)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a hanging test held the run for %v", d)
	}
	out.Reset()
	if res := Run(&out, Config{}, tests[:1]); !res.OK() || out.String() != "selftest: PASS good\nselftest: ok 1/1\n" {
		t.Errorf("all-pass run: %+v %q", res, out.String())
	}
}
