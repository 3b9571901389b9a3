// Package devices holds the contract every virtual device of a doppel guest
// follows, and the versioned state encoding they share. The device models
// themselves live in sub-packages (uart, pic, pit, rtc, i8042, lapic,
// ioapic, pci, acpi, fwcfg, ...), each a pure-Go state machine tested on a
// Linux host.
//
// The rules:
//
//   - A device never reads wall time, never sleeps and starts no goroutine.
//     Time comes from a Clock (guest nanoseconds); a device with timers
//     reports its next deadline (Timer) and is advanced by Poll, which the
//     vCPU loop calls at exits and when the deadline passes.
//   - Interrupt outputs are levels: a device holds a Line and calls
//     Set(true) while its condition is pending and Set(false) when it is
//     cleared, so level-triggered sources work and edge-triggered inputs
//     see the rising edge. Interrupt controllers implement Line for each
//     input pin (Pin returns one).
//   - The IOAPIC and MSI-capable devices send Messages to the local APICs
//     through a MessageSink; a LAPIC's EOI of a level-triggered vector is
//     broadcast to EOIListeners (the IOAPIC clears Remote IRR there).
//   - Port devices have the method set of vmm.PortDevice (PortIn/PortOut
//     at an offset from the base they were mapped at); MMIO devices
//     implement MMIODevice. Neither blocks.
//   - Every device implements Snapshotter: Save returns its whole
//     guest-visible state as a versioned blob (see Encoder) and Restore
//     puts it back into a device built with the same configuration. A
//     blob of another device, another version or a truncated blob is
//     refused with an error wrapping ErrBadState; the device is then
//     unchanged.
//
// A device is not safe for concurrent use unless its doc says so; the
// Machine serialises access (one lock per device or per bus).
package devices
