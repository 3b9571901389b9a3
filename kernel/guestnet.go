package main

import (
	"fmt"
	"net"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/nic"
	"github.com/doppel-ft/doppel/vmm/netbridge"
)

// The guest's network: doppel.guest.net=<NIC> gives the guest a virtio-net
// NIC (vmm/pc/net.go) bridged to that doppel NIC (vmm/netbridge), which
// doppel's own network stack then leaves alone. The guest's MAC is
// doppel.guest.mac, the same on both machines of an FT pair, so the
// outside network sees one guest whichever machine runs it.
const (
	FlagGuestNet = "doppel.guest.net"
	FlagGuestMAC = "doppel.guest.mac"
	// DefaultGuestMAC is locally administered (bit 1 of the first octet),
	// so it clashes with no vendor's NIC.
	DefaultGuestMAC = "02:d0:99:e1:00:01"
)

func init() {
	for _, f := range []board.Flag{
		{Name: FlagGuestNet, Kind: board.KindString, Default: "",
			Help: "doppel NIC (e.g. virtio-net-1) bridged to the guest's virtio-net NIC; doppel's stack does not use it"},
		{Name: FlagGuestMAC, Kind: board.KindString, Default: DefaultGuestMAC,
			Help: "MAC address of the guest's NIC (unicast; the same on both FT machines)"},
	} {
		mustRegister(f)
	}
}

// guestMAC parses doppel.guest.mac.
func guestMAC(s string) (nic.MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return nic.MAC{}, fmt.Errorf("%s=%s: not a 6-byte MAC address", FlagGuestMAC, s)
	}
	m := nic.MAC(hw)
	if m[0]&1 != 0 || m == (nic.MAC{}) {
		return nic.MAC{}, fmt.Errorf("%s=%s: not a unicast address", FlagGuestMAC, s)
	}
	return m, nil
}

// findNIC returns the opened NIC called name.
func findNIC(name string) (nic.NIC, error) {
	nics.mu.Lock()
	defer nics.mu.Unlock()
	var names []string
	for _, n := range nics.nics {
		if n.Name() == name {
			return n, nil
		}
		names = append(names, n.Name())
	}
	return nil, fmt.Errorf("%s=%s: no such NIC (there are %v)", FlagGuestNet, name, names)
}

// newGuestBridge returns the started bridge for doppel.guest.net, nil if
// the flag is not set.
func newGuestBridge(k *kernel) (*netbridge.Bridge, error) {
	name := k.flags.String(FlagGuestNet)
	if name == "" {
		return nil, nil
	}
	n, err := findNIC(name)
	if err != nil {
		return nil, err
	}
	mac, err := guestMAC(k.flags.String(FlagGuestMAC))
	if err != nil {
		return nil, err
	}
	br, err := netbridge.New(netbridge.Config{NIC: n, MAC: mac})
	if err != nil {
		return nil, err
	}
	br.Start()
	k.log.Printf("guest", "guest NIC %s bridged to %s (mac %s, link %s)", macString(mac), name, macString(n.MAC()), upDown(n.LinkUp()))
	return br, nil
}
