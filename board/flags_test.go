package board

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"64K", 64 << 10, false},
		{"64k", 64 << 10, false},
		{"512M", 512 << 20, false},
		{"1G", 1 << 30, false},
		{"2T", 2 << 40, false},
		{"18446744073709551615", 1<<64 - 1, false},
		{"18446744073709551616", 0, true},
		{"16777216T", 0, true}, // 2^24 TiB = 2^64 bytes
		{"", 0, true},
		{"M", 0, true},
		{"1.5G", 0, true},
		{"-1", 0, true},
		{"1GB", 1 << 30, false},
		{"1GiB", 1 << 30, false},
		{"256MiB", 256 << 20, false},
		{"256mb", 256 << 20, false},
		{"1G B", 0, true},
		{"0x1000", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0", 4095: "4095", 4096: "4K", 512 << 20: "512M", 1 << 30: "1G", 3 << 40: "3T", 1536 << 20: "1536M",
	} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name  string
		words []string
		check func(v *Values) string // returns what is wrong, or ""
		errs  []string
	}{
		{
			name:  "defaults",
			words: nil,
			check: func(v *Values) string {
				if v.Bool(FlagSelftest) || v.Size(FlagReserve) != 64<<20 || v.String(FlagFatal) != "halt" ||
					v.Int(FlagLogLines) != 1024 || v.Duration(FlagSelftestSlack) != 25*time.Millisecond ||
					v.String(FlagGuest) != "" || v.IsSet(FlagSelftest) {
					return "defaults not applied"
				}
				return ""
			},
		},
		{
			name: "every kind set",
			words: []string{"doppel.selftest=1", "doppel.reserve=1G", "doppel.fatal=reboot",
				"doppel.loglines=64", "doppel.selftest.slack=40ms", "doppel.guest=linux initrd=x"},
			check: func(v *Values) string {
				if !v.Bool(FlagSelftest) || v.Size(FlagReserve) != 1<<30 || v.String(FlagFatal) != "reboot" ||
					v.Int(FlagLogLines) != 64 || v.Duration(FlagSelftestSlack) != 40*time.Millisecond ||
					v.String(FlagGuest) != "linux initrd=x" || !v.IsSet(FlagGuest) {
					return "values not parsed"
				}
				return ""
			},
		},
		{
			name:  "bare bool means 1",
			words: []string{"doppel.selftest"},
			check: func(v *Values) string {
				if !v.Bool(FlagSelftest) {
					return "bare doppel.selftest did not enable it"
				}
				return ""
			},
		},
		{
			name:  "last word wins",
			words: []string{"doppel.selftest=1", "doppel.selftest=0"},
			check: func(v *Values) string {
				if v.Bool(FlagSelftest) {
					return "first value won"
				}
				return ""
			},
		},
		{
			name:  "other words are not doppel's",
			words: []string{"GODEBUG=asyncpreemptoff=1", "console=ttyS0", "quiet", "doppelganger=1", "x.doppel.y=2"},
		},
		{
			name: "bad values keep the default",
			words: []string{"doppel.selftest=maybe", "doppel.reserve=lots", "doppel.fatal=explode",
				"doppel.loglines=3", "doppel.selftest.slack=soon", "doppel.guest=", "doppel.smp=two", "doppel.smp=0", "doppel.reserve"},
			check: func(v *Values) string {
				if v.Bool(FlagSelftest) || v.Size(FlagReserve) != 64<<20 || v.String(FlagFatal) != "halt" ||
					v.Int(FlagLogLines) != 1024 || v.IsSet(FlagGuest) || v.Int(FlagSMP) != 4096 {
					return "a bad value replaced a default"
				}
				return ""
			},
			errs: []string{
				"board: bad flag doppel.selftest=maybe: want 0 or 1",
				"board: bad flag doppel.reserve=lots: want a size like 4096, 64K, 512M, 512MiB or 1G",
				"board: bad flag doppel.fatal=explode: want one of halt, reboot",
				"board: bad flag doppel.loglines=3: want an integer in 16..1048576",
				"board: bad flag doppel.selftest.slack=soon: want a duration like 50ms, 2s or 1m30s",
				"board: bad flag doppel.guest=: want a non-empty value",
				"board: bad flag doppel.smp=two: want an integer in 1..4096",
				"board: bad flag doppel.smp=0: want an integer in 1..4096",
				"board: bad flag doppel.reserve: want a size like 4096, 64K, 512M, 512MiB or 1G",
			},
		},
		{
			name:  "unknown doppel keys",
			words: []string{"doppel.selftst=1", "doppel.", "doppel.selftest=1"},
			check: func(v *Values) string {
				if !v.Bool(FlagSelftest) {
					return "a good flag after unknown ones was lost"
				}
				return ""
			},
			errs: []string{"board: bad flag doppel.selftst=1: unknown doppel flag (the shell's flags command lists them)", "board: bad flag doppel.: unknown doppel flag (the shell's flags command lists them)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, errs := Known.Parse(tt.words)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.errs, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.errs, "\n"))
			}
			if tt.check != nil {
				if msg := tt.check(v); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

func TestRegister(t *testing.T) {
	tests := []struct {
		flag    Flag
		wantErr string
	}{
		{Flag{Name: "doppel.vmm.vpid", Kind: KindBool, Default: "1"}, ""},
		{Flag{Name: "doppel.vmm.vpid", Kind: KindBool, Default: "1"}, "already registered"},
		{Flag{Name: "vmm.vpid", Kind: KindBool, Default: "1"}, "must start with"},
		{Flag{Name: "doppel.", Kind: KindBool, Default: "1"}, "must start with"},
		{Flag{Name: "doppel.mode", Kind: KindEnum, Default: "fast", Enum: []string{"slow"}}, "bad default"},
	}
	r, _ := NewRegistry()
	for _, tt := range tests {
		err := r.Register(tt.flag)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Register(%+v) = %v, want error containing %q", tt.flag, err, tt.wantErr)
		}
	}
}

func TestValuesList(t *testing.T) {
	v, _ := Known.Parse([]string{"doppel.fatal=reboot"})
	var b strings.Builder
	if _, err := v.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != len(Known.Flags()) {
		t.Fatalf("%d lines for %d flags:\n%s", len(lines), len(Known.Flags()), b.String())
	}
	var fatal string
	for _, l := range lines {
		if strings.HasPrefix(l, FlagFatal+" ") {
			fatal = l
		}
	}
	if f := strings.Fields(fatal); len(f) < 3 || f[1] != "reboot" || f[2] != "set" || !strings.HasSuffix(fatal, "(boot layer)") {
		t.Errorf("doppel.fatal line = %q", fatal)
	}
}
