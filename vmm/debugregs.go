package vmm

import "github.com/doppel-ft/doppel/cpu"

// GuestDebugRegs carries a vCPU's DR0-DR3 and DR6 between its saved state
// and the CPU, for both vendors: neither the VMCS nor the VMCB holds
// DR0-DR3 (the VMCS not DR6 either), so a guest's values live in the CPU's
// registers across exits, which doppel itself never uses. Its methods run
// on the vCPU's own pinned thread.
type GuestDebugRegs struct {
	Regs cpu.DebugRegs
	// Pending: Regs are to be loaded before the next entry (at creation,
	// with RESET's values, and after a restore); otherwise the CPU holds
	// the guest's.
	Pending bool
}

// NewGuestDebugRegs returns RESET's values, pending a load.
func NewGuestDebugRegs() GuestDebugRegs {
	return GuestDebugRegs{Regs: cpu.DebugRegs{DR6: cpu.ResetDR6}, Pending: true}
}

// BeforeEntry loads pending registers into the CPU.
func (g *GuestDebugRegs) BeforeEntry() {
	if g.Pending {
		cpu.WriteDebugRegs(&g.Regs)
		g.Pending = false
	}
}

// Current returns the guest's registers: the pending ones, else the CPU's.
func (g *GuestDebugRegs) Current() cpu.DebugRegs {
	d := g.Regs
	if !g.Pending {
		cpu.ReadDebugRegs(&d)
	}
	return d
}

// Restore makes r the guest's registers, loaded before the next entry.
func (g *GuestDebugRegs) Restore(r cpu.DebugRegs) { g.Regs, g.Pending = r, true }
