package main

import (
	"fmt"

	"github.com/doppel-ft/doppel/board"
)

// A subsystem is started once at boot, in table order, after the CPU and
// memory reports. An error from one is fatal.
type subsystem struct {
	name  string
	start func(k *kernel) error
}

// subsystems is the boot-time start order. The vmm hooks in here: its entry
// replaces startGuest's placeholder and launches the guest module named by
// doppel.guest=<module>.
var subsystems = []subsystem{
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

// startGuest finds the module doppel.guest names. Starting it is the vmm's
// job; until the vmm is wired in, it only reports what it would start. A
// missing module is reported, not fatal, so the operator still gets a shell.
func startGuest(k *kernel) error {
	name := k.flags.String(board.FlagGuest)
	if name == "" {
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
	k.log.Printf("guest", "module %q at %#x-%#x (%s); no vmm in this kernel yet, not started",
		m.Name, m.Start, m.End, board.FormatBytes(m.Size()))
	return nil
}
