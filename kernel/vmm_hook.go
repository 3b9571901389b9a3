package main

import (
	"errors"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/vmm/dirtytest"
)

// The vmm's entry in the subsystem table: with doppel.guest=<module> on
// bare metal it runs the EPT dirty-page test guest (vmm/dirtytest), prints
// its `ept-dirty:` and `ept-isolation:` lines and powers off. Where VT-x is
// missing or off it says why and the kernel goes on to its shell. Importing
// dirtytest registers its flags (doppel.dirtytest.*, doppel.ept.scan,
// doppel.guest.mem) with board.Known before boot parses the command line.
func init() {
	for i := range subsystems {
		if subsystems[i].name == "guest" {
			subsystems[i].start = startVMMGuest
		}
	}
}

func startVMMGuest(k *kernel) error {
	if k.flags.String(board.FlagGuest) == "" || !k.bareMetal {
		return startGuest(k)
	}
	err := dirtytest.RunFromFlags(k.out, k.flags)
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
