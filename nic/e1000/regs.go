// Package e1000 drives the Intel 82540EM Gigabit Ethernet controller (the
// e1000 that QEMU's -device e1000 and Bochs's e1000 emulate, and many
// servers carry), following Intel's "PCI/PCI-X Family of Gigabit Ethernet
// Controllers Software Developer's Manual" (8254x, revision 4.0; section
// numbers below are that manual's): legacy descriptors (3.2.3 receive,
// 3.3.3 transmit), initialization (14.3-14.5), the EEPROM read register
// (13.4.4), interrupts (13.4.17-13.4.21) and statistics (13.7).
//
// The driver owns one receive and one transmit ring with their buffers in
// DMA memory (nic/dma). Its interrupt goroutine moves received frames into
// a bounded queue (full: dropped and counted), reclaims transmit
// descriptors and signals TxReady. Frames the device marks bad (error
// bits), runts and giants are counted in RxErrors and dropped. An MTU
// above 1500 (Config.MTU) turns on long packet reception (RCTL.LPE) with
// buffers of 4, 8 or 16 KiB (RCTL.BSEX), one whole frame per descriptor.
package e1000

// Vendor and device ID of the 82540EM (5.1, table 5-1).
const (
	VendorIntel   = 0x8086
	Device82540EM = 0x100E
)

// Register offsets in the memory BAR (13.1, table 13-2).
const (
	CTRL   = 0x0000 // Device Control
	STATUS = 0x0008 // Device Status
	EERD   = 0x0014 // EEPROM Read
	ICR    = 0x00C0 // Interrupt Cause Read (clear on read)
	ICS    = 0x00C8 // Interrupt Cause Set
	IMS    = 0x00D0 // Interrupt Mask Set/Read
	IMC    = 0x00D8 // Interrupt Mask Clear
	RCTL   = 0x0100 // Receive Control
	TCTL   = 0x0400 // Transmit Control
	TIPG   = 0x0410 // Transmit Inter Packet Gap
	RDBAL  = 0x2800 // Receive Descriptor Base Address Low
	RDBAH  = 0x2804
	RDLEN  = 0x2808
	RDH    = 0x2810
	RDT    = 0x2818
	RDTR   = 0x2820 // Receive Delay Timer
	TDBAL  = 0x3800
	TDBAH  = 0x3804
	TDLEN  = 0x3808
	TDH    = 0x3810
	TDT    = 0x3818
	MTA    = 0x5200 // Multicast Table Array, 128 registers
	RAL0   = 0x5400 // Receive Address Low
	RAH0   = 0x5404 // Receive Address High

	// Statistics (13.7), clear on read.
	CRCERRS = 0x4000 // CRC Error Count
	RXERRC  = 0x400C // RX Error Count
	MPC     = 0x4010 // Missed Packets Count
	RUC     = 0x40A4 // Receive Undersize Count
	ROC     = 0x40AC // Receive Oversize Count
)

// CTRL bits (13.4.1).
const (
	CtrlFD     = 1 << 0  // full duplex
	CtrlLRST   = 1 << 3  // link reset
	CtrlASDE   = 1 << 5  // auto-speed detection enable
	CtrlSLU    = 1 << 6  // set link up
	CtrlRST    = 1 << 26 // device reset, self-clearing
	CtrlVME    = 1 << 30 // VLAN mode enable
	CtrlPHYRST = 1 << 31 // PHY reset
)

// STATUS bits (13.4.2).
const StatusLU = 1 << 1 // link up

// EERD bits of the 82540EM (13.4.4).
const (
	EerdStart     = 1 << 0
	EerdDone      = 1 << 4
	EerdAddrShift = 8
	EerdDataShift = 16
)

// Interrupt cause bits, shared by ICR/ICS/IMS/IMC (13.4.17).
const (
	IntTXDW   = 1 << 0 // transmit descriptor written back
	IntTXQE   = 1 << 1 // transmit queue empty
	IntLSC    = 1 << 2 // link status change
	IntRXSEQ  = 1 << 3 // receive sequence error
	IntRXDMT0 = 1 << 4 // receive descriptor minimum threshold
	IntRXO    = 1 << 6 // receiver overrun
	IntRXT0   = 1 << 7 // receiver timer interrupt (frame received)
)

// RCTL bits (13.4.22).
const (
	RctlEN        = 1 << 1
	RctlSBP       = 1 << 2 // store bad packets (off: the device drops them)
	RctlUPE       = 1 << 3
	RctlMPE       = 1 << 4
	RctlLPE       = 1 << 5 // long packet enable (off: >1522 bytes dropped)
	RctlBAM       = 1 << 15
	RctlBSIZE2K   = 0 << 16 // buffer size 2048 with BSEX=0
	RctlBSIZE16K  = 1 << 16 // buffer size 16384 with BSEX=1
	RctlBSIZE8K   = 2 << 16 // buffer size 8192 with BSEX=1
	RctlBSIZE4K   = 3 << 16 // buffer size 4096 with BSEX=1
	RctlBSEX      = 1 << 25 // buffer size extension: BSIZE times 16
	RctlSECRC     = 1 << 26 // strip the Ethernet CRC
	rctlRDMTSHalf = 0 << 8
)

// TCTL bits (13.4.33).
const (
	TctlEN        = 1 << 1
	TctlPSP       = 1 << 3 // pad short packets
	TctlCTShift   = 4      // collision threshold
	TctlCOLDShift = 12     // collision distance
)

// TIPG values recommended for the 82540EM on copper (13.4.34).
const tipg = 10 | 8<<10 | 6<<20

// Legacy descriptors are 16 bytes (3.2.3, 3.3.3).
const descSize = 16

// Receive descriptor status and error bits (3.2.3.1, 3.2.3.2).
const (
	RxStatusDD  = 1 << 0 // descriptor done
	RxStatusEOP = 1 << 1 // end of packet

	RxErrCE   = 1 << 0 // CRC or alignment error
	RxErrSE   = 1 << 1 // symbol error
	RxErrSEQ  = 1 << 2 // sequence error
	RxErrCXE  = 1 << 4 // carrier extension error
	RxErrTCPE = 1 << 5 // TCP/UDP checksum error
	RxErrIPE  = 1 << 6 // IP checksum error
	RxErrRXE  = 1 << 7 // data error
	// rxFatal are the errors that make a frame bad; TCPE/IPE only concern
	// checksum offload, which the driver does not enable.
	rxFatal = RxErrCE | RxErrSE | RxErrSEQ | RxErrCXE | RxErrRXE
)

// Transmit descriptor command and status bits (3.3.3.1, 3.3.3.2).
const (
	TxCmdEOP   = 1 << 0 // end of packet
	TxCmdIFCS  = 1 << 1 // insert FCS
	TxCmdRS    = 1 << 3 // report status
	TxStatusDD = 1 << 0
)

// Extended transmit descriptors (3.3.5-3.3.7, DEXT set): a TCP/IP
// context descriptor sets up checksum insertion and TCP segmentation for
// the data descriptors that follow it.
const (
	TxCmdTSE  = 1 << 2 // TCP segmentation (data and context)
	TxCmdDEXT = 1 << 5 // extended descriptor
	TxCtxTCP  = 1 << 0 // context TUCMD: the packet is TCP
	TxCtxIP   = 1 << 1 // context TUCMD: IPv4
	// txDTypData is DTYP (bits 23:20 of the command dword, the high
	// nibble of byte 10) of a data descriptor; a context one has 0.
	txDTypData  = 1 << 4
	TxPoptsIXSM = 1 << 0 // insert the IP header checksum
	TxPoptsTXSM = 1 << 1 // insert the TCP checksum
)

// TCP/IP context descriptor offsets (3.3.6): where the IP header
// checksum's sum starts, goes and ends, the same for TCP (TUCSE 0: to the
// packet's end), the payload length (20 bits, with the descriptor type in
// byte 10's high nibble), the header length and the MSS.
const (
	ctxIPCSS  = 0
	ctxIPCSO  = 1
	ctxIPCSE  = 2
	ctxTUCSS  = 4
	ctxTUCSO  = 5
	ctxTUCSE  = 6
	ctxPayLen = 8
	ctxHdrLen = 13
	ctxMSS    = 14
	txPopts   = 13 // data descriptor: checksum options
	txDType   = 10
)

// Descriptor field offsets (both kinds are 16 bytes: buffer address, then
// length, then kind-specific bytes).
const (
	descAddr   = 0
	descLength = 8
	rxStatus   = 12
	rxErrors   = 13
	txCmd      = 11
	txStatus   = 12
)
