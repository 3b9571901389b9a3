package netstack

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "10.0.2.15/24", want: "10.0.2.15/24"},
		{in: "10.0.2.15/24,gw=10.0.2.2", want: "10.0.2.15/24,gw=10.0.2.2"},
		{in: " 192.168.7.1/32 ", want: "192.168.7.1/32"},
		{in: "dhcp", want: "dhcp"},
		{in: "10.0.2.15", err: "want <ipv4>/<bits>"},
		{in: "fe80::1/64", err: "only IPv4"},
		{in: "10.0.0.1/0", err: "prefix length 0"},
		{in: "10.0.0.1/31", err: "prefix length 31"},
		{in: "10.0.2.15/24,gw=10.0.3.2", err: "outside 10.0.2.0/24"},
		{in: "10.0.2.15/24,gw=x", err: "not an IPv4"},
		{in: "10.0.2.15/24,mtu=9000", err: "want gw="},
		{in: "", err: "want <ipv4>"},
	} {
		c, err := ParseConfig(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseConfig(%q) error %v, want one containing %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("ParseConfig(%q): %v", tc.in, err)
		case tc.err == "" && c.String() != tc.want:
			t.Errorf("ParseConfig(%q) = %s, want %s", tc.in, c, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"10.0.2.15/24,gw=10.0.2.2", "dhcp", "1.2.3.4/32", "x,gw=", "10.0.0.1/8,gw=10.255.255.255,gw=10.0.0.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(s)
		if err != nil {
			return
		}
		// What parses formats back to something that parses to the same.
		c2, err := ParseConfig(c.String())
		if err != nil || c2 != c {
			t.Fatalf("%q -> %v -> %v (%v)", s, c, c2, err)
		}
	})
}
