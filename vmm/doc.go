// Package vmm runs guests under Intel VT-x: it probes the VMX capabilities,
// builds the VMCS, enters the guest and dispatches its VM exits.
//
// References, Intel SDM Vol. 3C:
//   - ch. 24 "Introduction to Virtual Machine Extensions" (VMXON, the
//     VMXON region, IA32_FEATURE_CONTROL);
//   - ch. 25 "Virtual Machine Control Structures": guest and host state
//     areas (25.4, 25.5), VM-execution controls (25.6), VM-exit controls
//     (25.7), VM-entry controls (25.8), exit information (25.9);
//   - ch. 26-27 VM entries and VM exits; 28.2.1 exit qualifications;
//   - ch. 31 "VMX Instruction Reference", 31.4 VM-instruction error numbers;
//   - App. A "VMX Capability Reporting Facility" (the IA32_VMX_* MSRs);
//   - App. B "Field Encoding in VMCS"; App. C "VMX Basic Exit Reasons".
//
// The package is split along the line the design draws: everything here
// except the VMX instruction stubs (vmx_amd64.s) and the code that drives
// them is pure Go and tested on a Linux host: field encodings, control bits
// and their adjustment against the capability MSRs, the capability report,
// exit-qualification decoders, the exit dispatch table and the doppel test
// port protocol. Virtual devices live in their own packages (vmm/serial).
//
// # Test guest start state
//
// The test guest (testguest/) is a flat binary loaded at guest-physical
// GuestLoadAddr and entered in 32-bit protected mode with paging off, which
// needs the "unrestricted guest" secondary control: CS a flat 32-bit code
// segment (base 0, limit 4 GiB, selector 0x08), DS/ES/SS/FS/GS flat data
// (selector 0x10), CR0 = PE|ET|NE, CR4 = VMXE is hidden by the CR4 read
// shadow, RFLAGS = 0x2, RIP = GuestLoadAddr, ESP = GuestLoadAddr (the stack
// grows down below the image), EBX = the guest's RAM size in bytes.
// Interrupts are off and stay off. The guest talks to doppel only through
// I/O ports: COM1 (0x3F8-0x3FF, a 16550) and the test port (TestPortBase).
package vmm
