package board

import (
	"errors"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
)

func openTestdata(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil && OnBareMetal() {
		t.Skipf("testdata is not on the machine: %v", err) // a go test -c kernel
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestParseModules(t *testing.T) {
	mods, err := ParseModules(openTestdata(t, "modules.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Module{
		{0x4000000, 0x4a00000, "/boot/vmlinuz-6.1.0-cloud-amd64 console=ttyS0 quiet"},
		{0x4a00000, 0x5000000, "/boot/initrd.cpio"},
		{0x5000000, 0x5000000, ""},
	}
	if !reflect.DeepEqual(mods, want) {
		t.Fatalf("got %+v\nwant %+v", mods, want)
	}
	for _, tt := range []struct {
		name  string
		found bool
		start uint64
	}{
		{"/boot/vmlinuz-6.1.0-cloud-amd64 console=ttyS0 quiet", true, 0x4000000},
		{"/boot/vmlinuz-6.1.0-cloud-amd64", true, 0x4000000},
		{"initrd.cpio", true, 0x4a00000},
		{"initrd", true, 0x4a00000},
		{"vmlinuz", false, 0},
		{"quiet", false, 0},
	} {
		m, ok := FindModule(mods, tt.name)
		if ok != tt.found || m.Start != tt.start {
			t.Errorf("FindModule(%q) = %+v, %v; want start %#x, %v", tt.name, m, ok, tt.start, tt.found)
		}
	}
	for _, bad := range []string{"0x10", "0x10 0x8 x", "16 0x20 x"} {
		if _, err := ParseModules(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseModules(%q) accepted it", bad)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	cpus, err := ParseCPUs(openTestdata(t, "cpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []CPU{{0, 0, true}, {1, 2, true}, {2, 4, false}, {3, 6, true}}
	if !reflect.DeepEqual(cpus, want) {
		t.Fatalf("got %+v, want %+v", cpus, want)
	}
	if n := len(Online(cpus)); n != 3 {
		t.Errorf("Online: %d CPUs, want 3", n)
	}
	for _, bad := range []struct{ in, wantErr string }{
		{"x apic=0 online=1", "index \"x\""},
		{"0 apic=zero online=1", "apic=\"zero\""},
		{"0 apic=0 online=yes", "online=\"yes\": want 0 or 1"},
		{"0 apic=0", "want \"<index> apic=<id> online=<0|1>\""},
	} {
		_, err := ParseCPUs(strings.NewReader(bad.in))
		if err == nil || !strings.Contains(err.Error(), bad.wantErr) {
			t.Errorf("ParseCPUs(%q) = %v, want error containing %q", bad.in, err, bad.wantErr)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	mi, err := ParseMeminfo(openTestdata(t, "meminfo-doppel.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]uint64{
		"MemTotal": 4128768 << 10, "MemFree": 3932160 << 10, "DoppelReserved": 64 << 20,
	} {
		if got, err := mi.Get(key); err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", key, got, err, want)
		}
	}
	if _, err := mi.Get("SwapTotal"); err == nil || !strings.Contains(err.Error(), "no SwapTotal") {
		t.Errorf("Get(SwapTotal) error = %v", err)
	}
	mi, err = ParseMeminfo(strings.NewReader("HugePages_Total:       0\nHugepagesize:       2048 kB\n"))
	if err != nil || mi["HugePages_Total"] != 0 || mi["Hugepagesize"] != 2<<20 {
		t.Errorf("unitless and kB keys: %v, %v", mi, err)
	}
	for _, bad := range []string{"MemTotal 100 kB", "MemTotal: lots kB", "MemTotal: 100 MB", "MemTotal:"} {
		if _, err := ParseMeminfo(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseMeminfo(%q) accepted it", bad)
		}
	}
}

// TestLiveFiles reads what this machine serves: the layer's files on bare
// metal, the host's /proc/meminfo and a not-exist error elsewhere.
func TestLiveFiles(t *testing.T) {
	mi, err := ReadMeminfo()
	if err != nil {
		t.Fatalf("ReadMeminfo: %v", err)
	}
	if total, err := mi.Get("MemTotal"); err != nil || total < 64<<20 {
		t.Errorf("MemTotal = %d, %v", total, err)
	}
	_, err = ReadMemmap()
	if OnBareMetal() {
		if err != nil {
			t.Errorf("ReadMemmap on bare metal: %v", err)
		}
		return
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), MemmapPath) {
		t.Errorf("ReadMemmap on a host = %v, want a not-exist error naming %s", err, MemmapPath)
	}
	if err := Power(Restart); !errors.Is(err, ErrNotBareMetal) {
		t.Errorf("Power(Restart) on a host = %v, want ErrNotBareMetal", err)
	}
}

func TestParseLockStats(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     []LockHolder
		err      string
	}{
		{name: "empty", in: ""},
		{name: "two", in: "sys202 3456 76100000 73 80500000\nvec32 5596 296100000 167 263900000\n",
			want: []LockHolder{{"sys202", 3456, 76100000, 73, 80500000}, {"vec32", 5596, 296100000, 167, 263900000}}},
		{name: "short line", in: "sys202 3456 76100000 73\n", err: "is not"},
		{name: "bad holder", in: "cpu1 1 2 3 4\n", err: "is not"},
		{name: "bad number", in: "vec14 1 2 x 4\n", err: "invalid syntax"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLockStats([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestParseCounters: the layer's "key value" counter files.
func TestParseCounters(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     map[string]uint64
		err      string
	}{
		{name: "stats", in: "syscalls 12\nirqs 3\n", want: map[string]uint64{"syscalls": 12, "irqs": 3}},
		{name: "empty", in: "", want: map[string]uint64{}},
		{name: "three fields", in: "202 5 6\n", err: "is not"},
		{name: "not a number", in: "202 many\n", err: "invalid syntax"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Parsed from memory: the test also runs in ring 0 under
			// doppel (qemu-test's TestGoTestsInVM), which has no
			// writable file system for a temporary file.
			got, err := parseCounters(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
