// Package vmguest makes a vmm.Machine the guest of the ftmirror engine
// (issue 12): VM is ftmirror.Memory, ftmirror.DirtySource and
// ftmirror.Guest at once, Output turns the guest's serial console and its
// virtio-net transmit side into the engine's output stream, and Splitter
// turns the released stream back into console bytes and frames.
//
// # Memory
//
// Page returns slices of the Machine's guest RAM (aliases, 4 KiB pages):
// the primary's engine reads them, the secondary's writes them, and the
// secondary's VM is built over that same RAM at failover.
//
// # Dirty pages: honouring the DirtySource contract
//
// ftmirror/interfaces.go asks that a write a Harvest does not report be
// reported by a later one, that the clearing be effective on every CPU that
// ran the guest before Harvest returns, and that an unanswered vCPU be an
// error. The hazard is that EPT/NPT D bits are cached in each CPU's TLB:
// after a D bit is cleared, a CPU holding the translation writes the page
// without setting it again until that CPU flushes.
//
// Every vCPU's vmm.CPU is wrapped (New builds the Machine) so that the
// vCPU's own goroutine, on its pinned CPU, serves requests between two
// guest entries. The vendor layer provides the per-vCPU hook, CPU:
// HarvestOnCPU (drain this CPU's own log), FlushOnCPU (forget cached
// translations) and SetTSCOffset; and, optionally, Config.Tables, the
// shared D-bit scan (ept.ScanSource over the EPT, its NPT equivalent).
//
// A harvest while the guest runs is a round: every vCPU is asked and
// kicked (again every millisecond until it takes the round); at its next
// exit it drains its log into the round and waits there, out of the
// guest. When all have arrived, the tables are scanned
// (no guest code runs anywhere, so no write races the scan), the vCPUs are
// released, and each flushes its own translations before it enters the
// guest again and acknowledges; Harvest returns after every
// acknowledgement. A vCPU that does not arrive or acknowledge within
// Config.HarvestTimeout fails the harvest with ErrUnanswered; pages
// drained into an abandoned round, or by a vCPU answering late, are kept
// and reported by the next harvest, so a failure never loses a page.
//
// Pause runs the same round, and while the vCPUs are held it pauses the
// Machine: once its state has left Running they are released straight
// back to the Machine's gate and park without entering the guest, so what
// they drained is everything they wrote. A Harvest while paused reports
// those pages, scans the tables, and marks every vCPU to flush before its
// next entry: since none can enter the guest before it has flushed, no
// write goes through a translation cached before the clear, which is what
// the contract's "flush and acknowledge" protects.
//
// Host code that writes guest memory (device DMA such as virtio-net
// receive, used-ring updates, instruction emulation) sets no D bit and
// logs nothing: device models are given VM.DMA() (a virtio.GuestMemory
// whose writes mark their pages), and other host writers call
// VM.MarkDirty (an atomic bitmap swapped by each Harvest).
//
// What the vendor side must do:
//
//   - VT-x with PML: HarvestOnCPU reads GUEST_PML_INDEX, adds the logged
//     GPAs above it, clears the D bits of the logged pages (PML logs only
//     0-to-1 transitions, so a page whose bit stayed set would never be
//     logged again), flushes its own CPU with INVEPT and resets the index
//     to 511; the PML-full exit drains the same way. Tables is nil: no
//     write escapes the logs, so the paused harvest scans nothing
//     (kernel/ftguest_vmx.go).
//   - VT-x without PML: HarvestOnCPU does nothing; Tables = ept.ScanSource
//     (clears D bits, ends with INVEPT on the scanning CPU, which is not
//     enough by itself: hence FlushOnCPU on every vCPU, as above).
//   - SVM: HarvestOnCPU does nothing; Tables scans and clears the NPT D
//     bits; FlushOnCPU sets the VMCB TLB_CONTROL to flush this guest's
//     ASID (or the whole TLB where FlushByAsid is missing) for the next
//     VMRUN, which is before any guest write on that CPU.
//
// The host fake in the tests models both hazards (a per-vCPU "TLB" that
// suppresses D bits until a flush; a per-vCPU log no other goroutine may
// touch), and the harvest test fails when the flush is left out.
//
// # Pause, state, restore, TSC
//
// Pause also quiesces the NIC (virtionet.Device.Quiesce(true): the guest
// sees no received packets and arrivals are held, F5) and captures the
// vCPU and device state at once with Machine.SaveState (memory travels as
// dirty pages, not in the state). Guest.Pause cannot return an error, so a
// failed pause or capture fails the Harvest that the engine runs right
// after it, and the engine ends the session instead of sending a
// checkpoint without state. SaveState returns the capture as blobs, each
// of version BlobVersion: BlobHeader (vCPU count, device names in
// AddDevice order, the guest TSC at the pause), BlobCPUBase+i (vCPU i's
// vendor blob, unchanged) and BlobDeviceBase+k (device k's blob).
//
// At failover the promoted secondary builds a VM over its mirrored RAM
// with the same devices in the same order and calls Restore with the
// committed blobs. The guest TSC continues: the offset becomes the
// checkpoint's guest TSC minus this host's TSC, applied by each vCPU
// (SetTSCOffset) before its first entry, so the guest reads at least what
// it read at the checkpoint, never less, whatever the two hosts' TSCs are.
// It lags real time by the failover; that is the price of no jump
// backwards.
//
// # Output commit
//
// A LineBuffer between the UART and Output hands the serial bytes on in
// whole lines and carries the partial line in each checkpoint (as the
// device "console-lines"), so no release, and no failover, ends inside a
// line.
//
// The UART's output writer and the NIC's Backend are the VM's Output: each
// serial write and each frame becomes a record (stream.go) handed to
// ftmirror.Primary.Output, which numbers it by stream offset, seals it in
// the epoch's checkpoint and releases it only after the secondary
// acknowledged that epoch. Nothing reaches the outside any other way. The
// release side is a Splitter (an ftmirror.OutputSink) that takes bytes
// only at the next offset, parses records across arbitrary release
// boundaries, writes serial payloads to the console and sends frames to
// the physical NIC, checking that frame sequence numbers (virtionet TxSeq)
// follow one another, across a failover too: the restored NIC continues
// from the checkpoint's TxSeq, and frames of the lost epoch were never
// released.
package vmguest
