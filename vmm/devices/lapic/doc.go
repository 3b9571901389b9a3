// Package lapic models the local APIC of each vCPU (Intel SDM Vol. 3A
// ch. 11, "Advanced Programmable Interrupt Controller (APIC)") and a
// Router that delivers interrupt messages among them.
//
// A LAPIC has both views of the same registers: the xAPIC register page
// (MMIORead/MMIOWrite, a devices.MMIODevice mapped at Base(), normally
// 0xFEE00000) and the x2APIC MSRs 0x800-0x8FF (ReadMSR/WriteMSR, with the
// 64-bit ICR at 0x830 and SELF IPI at 0x83F), plus IA32_APIC_BASE (0x1B)
// and IA32_TSC_DEADLINE (0x6E0). It implements ID, version (max LVT 5, no
// EOI-broadcast suppression), TPR/PPR, EOI, LDR/DFR (flat and cluster),
// SVR, ISR/TMR/IRR, ESR, ICR (fixed, lowest priority, NMI, INIT, SIPI,
// ExtINT; all shorthands), the six LVT entries (timer, thermal, perf,
// LINT0, LINT1, error; thermal and perf never fire), and the timer in
// one-shot, periodic and TSC-deadline modes with the divide configuration
// and current count. APR reads 0, SMI messages are ignored, and there is
// no CMCI entry. Timer time comes from a devices.Clock and the guest TSC
// rate from Config.TSCHz; the LAPIC is a devices.Timer.
//
// # How a vCPU loop uses it
//
// Build one Router, then one LAPIC per vCPU with Config{ID: i, BSP: i ==
// 0, Clock, TSCHz, Sink: router, EOI: ioapics} and router.Add it; give the
// IOAPIC the router as its sink. Then, on each vCPU's thread:
//
//   - EPT violation in the LAPIC page: MMIORead/MMIOWrite. RDMSR/WRMSR of
//     0x1B, 0x6E0 or 0x800-0x8FF: ReadMSR/WriteMSR; an error wrapping ErrGP
//     becomes #GP(0) in the guest. MOV to/from CR8: SetTPR(v<<4), TPR()>>4.
//   - Before each VM entry: Poll(clock) (or let PendingVector do it), then
//     in this order: TakeINIT() → reset the vCPU and stop running it until
//     TakeSIPI() returns a vector (start at CS = vector<<8, IP = 0);
//     TakeNMI() → inject NMI; if the guest can take an interrupt
//     (RFLAGS.IF, no STI/MOV-SS blocking): ExtINTPending() → ask the 8259
//     PIC for its vector, inject it, AckExtINT(); else PendingVector() →
//     inject it and Ack(vector). If an interrupt waits but the guest
//     cannot take it, request an interrupt-window exit.
//   - HLT: sleep until NextDeadline() of the LAPIC (and other timers) or
//     until Config.Wake is called: it runs on whichever thread made an
//     interrupt, NMI, INIT, SIPI or ExtINT pending (an IPI sender, the
//     IOAPIC's caller), for instance to signal a per-vCPU channel or
//     kick a running vCPU out of the guest.
//   - The guest's EOI write reaches EOI listeners (the IOAPIC) directly;
//     IPIs from the ICR go through the Router to the other LAPICs.
//
// Device MSIs (writes to 0xFEExxxxx) become messages with MSI and go to
// Router.Deliver like the IOAPIC's.
//
// What the vCPU's CPUID should say to match: CPUID.01H:EDX[9] (APIC),
// CPUID.01H:ECX[24] (TSC-deadline; Linux then skips calibrating the
// APIC timer), CPUID.01H:ECX[21] (x2APIC) if the vCPU routes the MSRs,
// and CPUID.15H with the core crystal clock = Config.BusHz so Linux knows
// the timer rate without a PIT.
//
// # Concurrency
//
// A LAPIC is safe for concurrent use: IPIs and IOAPIC messages arrive
// from other vCPU threads (Router.Deliver) while its own vCPU accesses it.
// One mutex per LAPIC guards its state; messages and EOI broadcasts it
// causes are sent after that mutex is released, so there is no lock
// cycle with the Router or an IOAPIC. The Router's locking is in its doc.
//
// # VMX APIC virtualisation (SDM Vol. 3C ch. 30)
//
// Without it every guest access to the APIC page or x2APIC MSRs exits and
// goes through MMIORead/MMIOWrite/ReadMSR/WriteMSR. With it, when the CPU
// has the features (Bochs's tigerlake does; see DESIGN.md):
//
//   - TPR shadow (30.1.1): CR8 and (with APIC-access or x2APIC
//     virtualisation) TPR accesses hit the virtual-APIC page's VTPR at
//     0x80 without exits. Hooks here: SyncPage fills the virtual-APIC page
//     (its layout is the xAPIC register page), SetTPR takes VTPR back after
//     an exit, and TPRThreshold gives the VMCS TPR threshold so lowering
//     VTPR below a waiting interrupt exits.
//   - APIC-register virtualisation (30.2): guest reads of the page come
//     from the virtual-APIC page instead of MMIORead; SyncPage keeps it
//     current (call it before entry when the LAPIC changed). Writes other
//     than TPR, EOI and self-IPI still exit to MMIOWrite.
//   - Virtual-interrupt delivery (30.2, 30.1.3): the CPU evaluates and
//     delivers pending interrupts itself from the page's VIRR/VISR and
//     RVI/SVI, and virtualises EOI, replacing PendingVector/Ack and the EOI
//     write. Hooks here: LoadVirtualAPIC (page plus guest interrupt status
//     before entry), StoreVirtualAPIC (TPR, IRR, ISR back after an exit,
//     keeping what arrived meanwhile), EOIExitBitmap (level vectors exit on
//     EOI) and VirtualEOI (the EOI-induced exit broadcasts to the IOAPIC);
//     the protocol is in apicv.go. It is checked against a model of the
//     CPU's SDM behaviour in apicv_test.go, not on a real CPU.
//   - Posted interrupts (30.6) would replace Router delivery to a running
//     vCPU; Bochs has none, and this package does not provide them.
//
// The package is usable without any of them: the exit-based paths are
// complete.
//
// Save/Restore cover the whole guest-visible state; the layout is in
// (*LAPIC).Save's doc. Tests run on the host (go test -race).
package lapic
