package main

import (
	"errors"
	"fmt"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/vmm/dirtytest"
)

// A subsystem is started once at boot, in table order, after the CPU and
// memory reports. An error from one is fatal.
type subsystem struct {
	name  string
	start func(k *kernel) error
}

// subsystems is the boot-time start order.
var subsystems = []subsystem{
	{"nic", startNIC},
	{"net", startNet},
	{"ft", startFT},
	{"ftguest", startFTGuest}, // doppel.ft.role: the protected guest (kernel/ftguest.go)
	{"guest", startGuest},
}

func startSubsystems(k *kernel) error {
	for _, s := range subsystems {
		if err := s.start(k); err != nil {
			return fmt.Errorf("start %s: %w", s.name, err)
		}
	}
	return nil
}

// startGuest runs the module doppel.guest names under VT-x. Until a real
// guest loader exists the only guest is the EPT dirty-page test guest
// (vmm/dirtytest: its `ept-dirty:` and `ept-isolation:` lines, then
// power-off). Importing dirtytest registers its flags (doppel.dirtytest.*,
// doppel.ept.scan, doppel.guest.mem) with board.Known before the command line
// is parsed. A missing module, or VT-x missing or off, is reported, not
// fatal, so the operator still gets a shell.
func startGuest(k *kernel) error {
	name := k.flags.String(board.FlagGuest)
	if name == "" || ftGuestOn.Load() { // doppel.ft.role runs it protected
		return nil
	}
	mods, err := board.ReadModules()
	if err != nil {
		k.log.Printf("guest", "doppel.guest=%s: %v", name, err)
		return nil
	}
	m, ok := board.FindModule(mods, name)
	if !ok {
		k.log.Printf("guest", "doppel.guest=%s: no such module (%d modules loaded)", name, len(mods))
		return nil
	}
	k.log.Printf("guest", "module %q at %#x-%#x (%s)", m.Name, m.Start, m.End, board.FormatBytes(m.Size()))
	if k.startPCGuest(m) { // a kernel the loader knows: vmm/pc, kernel/guest.go
		return nil
	}
	err = runTestGuest(k.out, k.flags)
	switch {
	case errors.Is(err, dirtytest.ErrNoVT):
		k.log.Printf("vmm", "%v; the console stays up", err)
		return nil
	case err != nil:
		k.log.Printf("vmm", "guest: %v", err)
	}
	k.log.Printf("vmm", "guest finished; powering off")
	if err := board.Power(board.PowerOff); err != nil {
		k.log.Printf("vmm", "power off: %v", err)
	}
	return nil
}
