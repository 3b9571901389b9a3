// Package virtionet is the guest's virtual NIC: a modern-only virtio-net
// device on the PCI transport, a pure-Go state machine that plugs into
// vmm/devices/pci as a Function and whose memory BAR is a
// devices.MMIODevice. Frames go to and come from the host through a
// Backend; its receive side can be quiesced for a checkpoint (F5) and
// every transmitted frame carries a sequence number for output commit
// (issue 12).
//
// Reference: OASIS "Virtual I/O Device (VIRTIO) Version 1.1" (1.2 keeps
// these layouts):
//
//   - 4.1.2 PCI device discovery: vendor 1AF4h, device 1040h + 1 (the
//     network device ID, 5.1.1), revision 1 for a non-transitional
//     device, subsystem device ID 40h or higher (4.1.2.1);
//   - 4.1.4 virtio structure PCI capabilities, all in BAR 0 (32-bit
//     memory, 16 KiB): common configuration at 0000h (4.1.4.3), ISR
//     status at 1000h (4.1.4.5), device configuration at 2000h
//     (4.1.4.6), notifications at 3000h with notify_off_multiplier 4 and
//     queue_notify_off = queue index (4.1.4.4), plus the PCI configuration
//     access capability (4.1.4.7) that the spec requires of every device;
//   - 4.1.5.1.3 and 4.1.5.4: no MSI-X capability, so msix_config and
//     queue_msix_vector read NO_VECTOR and the device interrupts through
//     INTx: ISR status bit 0 (used buffers) or bit 1 (configuration
//     change) set raises INTA# (level), reading the ISR clears both and
//     lowers it. Linux's virtio_pci falls back to INTx when MSI-X is
//     absent;
//   - 2.1 device status (writing 0 resets; FEATURES_OK stays clear when
//     the driver accepted features not offered or not VERSION_1, 3.1.1;
//     DEVICE_NEEDS_RESET is set on a faulty guest, 2.1.2, with a
//     configuration change interrupt once DRIVER_OK);
//   - 2.6 split virtqueues (package virtio does the ring walking);
//   - 5.1 network device: receiveq1 is queue 0, transmitq1 queue 1; the
//     features offered are VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC,
//     VIRTIO_NET_F_STATUS and (unless disabled) VIRTIO_NET_F_MRG_RXBUF;
//     the device configuration is struct virtio_net_config (mac, status
//     with VIRTIO_NET_S_LINK_UP); every buffer starts with the 12-byte
//     struct virtio_net_hdr (5.1.6), whose num_buffers the device fills
//     on receive (1 without MRG_RXBUF, 5.1.6.3.1) and ignores on
//     transmit. No checksum or segmentation offload is offered, so the
//     transmit header carries nothing the device must act on.
//
// # Faulty guests
//
// Every ring access goes through the GuestMemory the device was built
// with, which refuses addresses outside guest RAM. A descriptor index
// beyond the queue, a chain longer than the queue (a loop), a chain over
// its byte limit (MaxFrameLen plus the header on transmit, maxRxChain on
// receive), an indirect descriptor, an available index more than a queue
// ahead, a misaligned or oversized queue at enable time, a transmit chain
// shorter than the header: each sets DEVICE_NEEDS_RESET, counts in
// Stats.GuestErrors and stops the queues until the driver resets the
// device. Work per notification is bounded by the queue size times the
// chain limit. A notification of a queue that is absent or not enabled is
// ignored and counted (Stats.BadNotifies), as QEMU ignores it.
//
// # Host side and fault tolerance
//
// Transmit: each frame the guest posts (the Ethernet frame, the virtio
// header removed) is handed to Backend.Transmit with a sequence number
// that increases by one per frame from 1, never resets (not even on a
// device reset) and is part of the saved state. The output-commit layer
// above holds the frames: at the checkpoint pause it reads TxSeq(), the
// number of the last frame of the epoch; when the secondary acknowledges
// that checkpoint it releases, in sequence order, every held frame up to
// that number. On failover the secondary's device continues from the
// checkpoint's TxSeq, and frames numbered above it (never released) are
// discarded with the primary: the guest, resumed from the checkpoint,
// sends again what it sends.
//
// Receive: the host calls Receive with each frame from the physical NIC.
// The frame is queued in a bounded queue of held frames (Options.MaxHeld
// frames and MaxHeldBytes bytes, so the saved state stays within what the
// PCI bus saves per function; when full, the frame is dropped and
// counted) and delivered into the
// receive queue while the driver has buffers there. Quiesce(true), at the
// start of a checkpoint, stops delivery: the guest sees no received
// packets and arriving frames are held (F5); Quiesce(false) delivers the
// held frames in arrival order. Held frames are part of the saved state,
// so a secondary that takes over delivers them. Quiesce is host state,
// not saved: Restore leaves it as the host set it. Restore does no DMA
// (guest memory may not be in place yet): delivery resumes at the next
// Quiesce(false), Receive or notification.
//
// Each accepted frame also takes a receive sequence number (RxSeq, from
// 1, saved like txseq). A frame the primary accepts after a checkpoint's
// Save is not in that checkpoint; the host may forward every accepted
// frame with its number to the secondary, which after restoring the
// checkpoint hands the device, in order, those numbered above the
// restored RxSeq: input the old primary received after its last
// checkpoint then still reaches the guest (an acknowledgement from the
// outside that would otherwise be lost with the primary, costing the
// guest a retransmission timeout).
//
// Nothing is ever in flight inside the device: a notification is handled
// to the end before the MMIO write returns, so a paused guest leaves no
// device I/O to drain (F3) beyond the held receive frames.
//
// The device is not safe for concurrent use: the Machine serialises MMIO,
// configuration accesses and the host calls (one lock for the device).
//
// # Saved state
//
// Save writes kind "VNET" version 2, fields in this order:
//
//	pci       bytes   the configuration space (pci.Config's "PCIF" blob)
//	offered   u64     device features (must equal this device's)
//	driver    u64     driver features as written
//	devsel    u32     device_feature_select
//	drvsel    u32     driver_feature_select
//	status    u8      device status
//	queuesel  u16     queue_select
//	isr       u8      ISR status (bits 0-1)
//	gen       u8      config_generation
//	mac       6 x u8
//	link      bool    VIRTIO_NET_S_LINK_UP
//	pcicfg    bytes   16 bytes: the PCI access capability's bar, id,
//	                  padding, offset, length and pci_cfg_data
//	queues    u8      2, then per queue: size u16, enabled bool,
//	                  desc u64, driver u64, device u64, last_avail u16,
//	                  used_idx u16
//	txseq     u64     sequence number of the last transmitted frame
//	rxseq     u64     sequence number of the last received frame accepted
//	stats     8 x u64 the Stats counters in field order
//	held      u32     number of held receive frames, then each as bytes
//
// Restore refuses (ErrBadState, device unchanged) another kind or
// version, trailing bytes, another feature set, unknown status or ISR
// bits, FEATURES_OK with unacceptable features, an impossible queue, more
// held frames than MaxHeld or MaxHeldBytes, or one over MaxFrameLen.
package virtionet
