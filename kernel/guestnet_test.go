package main

import (
	"testing"

	"github.com/doppel-ft/doppel/nic"
)

func TestGuestMAC(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want nic.MAC
		ok   bool
	}{
		{DefaultGuestMAC, nic.MAC{0x02, 0xd0, 0x99, 0xe1, 0x00, 0x01}, true},
		{"52-54-00-AB-CD-EF", nic.MAC{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}, true},
		{"01:00:5e:00:00:01", nic.MAC{}, false}, // multicast
		{"ff:ff:ff:ff:ff:ff", nic.MAC{}, false},
		{"00:00:00:00:00:00", nic.MAC{}, false},
		{"02:00:00:00:00", nic.MAC{}, false},
		{"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", nic.MAC{}, false}, // 20-byte InfiniBand
		{"nonsense", nic.MAC{}, false},
	} {
		got, err := guestMAC(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("guestMAC(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
