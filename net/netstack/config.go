package netstack

import (
	"fmt"
	"net/netip"
	"strings"
)

// Config is an interface's address configuration, the value of the flag
// `doppel.net.<nic>`: "<addr>/<bits>[,gw=<addr>]" or "dhcp".
type Config struct {
	Addr    netip.Prefix // the address with its subnet's length
	Gateway netip.Addr   // the default route's next hop (optional)
	DHCP    bool         // ask a DHCP server instead (RFC 2131)
}

// ParseConfig parses a flag value. Only IPv4 is supported.
func ParseConfig(s string) (Config, error) {
	s = strings.TrimSpace(s)
	if s == "dhcp" {
		return Config{DHCP: true}, nil
	}
	head, rest, _ := strings.Cut(s, ",")
	p, err := netip.ParsePrefix(head)
	if err != nil {
		return Config{}, fmt.Errorf("netstack: address %q: want <ipv4>/<bits> or dhcp", head)
	}
	if !p.Addr().Is4() {
		return Config{}, fmt.Errorf("netstack: address %q: only IPv4 is supported", head)
	}
	if p.Bits() == 0 || p.Bits() > 30 && p.Bits() != 32 {
		return Config{}, fmt.Errorf("netstack: address %q: prefix length %d leaves no usable subnet", head, p.Bits())
	}
	c := Config{Addr: p}
	for rest != "" {
		var opt string
		opt, rest, _ = strings.Cut(rest, ",")
		k, v, ok := strings.Cut(opt, "=")
		if !ok || k != "gw" {
			return Config{}, fmt.Errorf("netstack: option %q: want gw=<ipv4>", opt)
		}
		gw, err := netip.ParseAddr(v)
		if err != nil || !gw.Is4() {
			return Config{}, fmt.Errorf("netstack: gateway %q: not an IPv4 address", v)
		}
		if !p.Masked().Contains(gw) {
			return Config{}, fmt.Errorf("netstack: gateway %v is outside %v", gw, p.Masked())
		}
		c.Gateway = gw
	}
	return c, nil
}

// String formats c as ParseConfig reads it.
func (c Config) String() string {
	switch {
	case c.DHCP && !c.Addr.IsValid():
		return "dhcp"
	case !c.Addr.IsValid():
		return "none"
	}
	s := c.Addr.String()
	if c.Gateway.IsValid() {
		s += ",gw=" + c.Gateway.String()
	}
	if c.DHCP {
		s += " (dhcp)"
	}
	return s
}
