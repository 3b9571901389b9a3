// Package ept builds and maintains Extended Page Tables, the second-level
// address translation of Intel VT-x, and harvests the guest's dirty pages from
// them.
//
// Reference: Intel 64 and IA-32 Architectures Software Developer's Manual
// (SDM), Vol. 3C, ch. 29 "VMX Support for Address Translation":
//   - 29.3.2 EPT translation mechanism (4-level walk: PML4, PDPT, PD, PT);
//   - 29.3.3 EPT-induced VM exits (violations, misconfigurations);
//   - 29.3.5 Accessed and dirty flags for EPT;
//   - 29.3.6 Page-modification logging (PML);
//   - 29.3.7 EPT and memory typing;
//   - 29.4.3 Invalidation of cached translations (INVEPT).
//
// and Vol. 3C 25.6.11 "Extended-Page-Table Pointer (EPTP)".
//
// The tables live in physical memory the package reaches only through the
// PhysMem interface: on bare metal a Region over doppel's reserved memory
// (mapped through /dev/mem), in tests a Region over a Go slice. Table frames
// and guest RAM both come from that region, and Map refuses a host address
// that is not guest RAM, so no guest-physical address can reach the kernel's
// memory or the EPT tables themselves.
//
// Map, Unmap, Protect, Lookup and the dirty harvest share one walker
// parameterised by a visitor (the shape of gVisor's ring0/pagetables); a walk
// never allocates Go memory. After every change the Tables call their
// Invalidator (INVEPT single-context on hardware).
//
// # Dirty tracking
//
// With EPT A/D enabled (EPTP bit 6) the CPU sets the accessed flag in every
// EPT entry it uses for a translation and the dirty flag in the leaf that
// maps a written page (29.3.5). HarvestScan test-and-clears the leaf dirty
// flags into a Bitmap of guest frame numbers and clears the accessed flags of
// the upper levels; a subtree whose upper accessed flag is clear was not used
// since the previous harvest and is skipped, so the cost of a scan follows the
// memory the guest touched, not its size. With PML (29.3.6) the CPU also logs
// the guest-physical address of each page whose dirty flag it sets; DrainPML
// moves those frames into the Bitmap and clears just their dirty flags.
//
// DrainPML finds a logged page's leaf through an index of the page tables
// under each 2 MiB slot (ptindex.go), built by one walk of the upper levels
// after the tables change, instead of a 4-level walk per page. Measured
// under Bochs (its TSC advances about once per instruction) for a full log
// of 512 pages: 152K cycles before (about 300 a page: four calls through
// PhysMem.Table and the walk loop; callgrind on the host gave the same 298
// instructions a page), 17.2K after (34 a page; callgrind 33.5; drains at
// PML-full exits run with interrupts on, and one that a host interrupt or
// thread switch falls into measures up to 29K). The harvest of about 500
// pages (no PML-full exit) went from 155K to 16K cycles in a 32 MiB guest
// and from 160K to 17K in a 256 MiB one.
//
// # AMD-V nested page tables
//
// Tables built with Options.Nested use the AMD64 long-mode entry format
// instead (npt.go; AMD APM Vol. 2 5.3-5.4 and 15.25): P, R/W, U/S (set in
// every entry: nested walks are user accesses), A bit 5, D bit 6, PS, NX
// for mappings without Execute. The walker, Map/Unmap/Protect/Lookup, the
// split and the scan harvest are the same code, reading the format's masks
// from a field; NCR3 is the root for the VMCB. NPT has no PML, so the scan
// is the only harvest there; its Invalidator is the vCPU's TLB flush at the
// next VMRUN (vmm/svm). Measured NPT harvest costs (host benchmark and the
// emulators) are in README.md's AMD-V section.
//
// Both harvests are exact only if no vCPU runs between clearing a flag and
// the INVEPT that follows: a translation cached with D=1 lets later writes
// through without setting D again. doppel harvests at a VM exit, with the
// guest's vCPUs out of non-root operation.
package ept
