// Package ethstream is a reliable, ordered byte stream carried directly
// in Ethernet frames, for a point-to-point dedicated link: the FT link
// between two doppel machines. A Conn is a net.Conn; a Demux routes the
// frames the link receives to Conns by session.
//
// # Why beside TCP
//
// Over gVisor's netstack, TCP's work per segment (the stack's layers,
// checksums, timers, queues) caps the FT link at about a third of the
// wire's raw frame rate on emulated CPUs. On a dedicated link most of
// TCP is not needed: there is no routing, no path MTU to find, no
// competing flows, no middleboxes, no handshake (the two ends agree on a
// session out of band). What remains is a small sliding-window protocol
// counted in frames: per frame it fills in a 40-byte header in place,
// sums a checksum (XXH64), makes one call to the NIC, and on
// receipt keeps the frame it was given until Read copies from it, then
// hands it back to the NIC's driver (Recycler) to receive into again.
//
// # Frames
//
// A frame is the Ethernet II header (destination Config.Peer, source
// Config.Local, EtherType 0x88B6, IEEE 802 Local Experimental EtherType
// 2), a 40-byte stream header and the payload. Header fields, big-endian:
//
//	offset size field
//	     0    1 version  3
//	     1    1 kind     1 data, 2 ack, 3 close
//	     2    1 flags    bit 0: ack now (the sender waits for this ack)
//	     3    1 shift    the SACK bitmap starts at frame ack+1+64*shift
//	     4    4 session  Config.Session
//	     8    8 seq      frame number of a data frame; a close frame's is
//	                     one past the last data frame
//	    16    8 ack      every frame below it was received
//	    24    8 sack     bit i set: frame ack+1+64*shift+i was received
//	    32    2 window   frames the receiver takes beyond ack
//	    34    2 length   payload bytes
//	    36    4 sum      the low 32 bits of XXH64 of header bytes 0-35
//	                     followed by the payload's XXH64 (little-endian)
//
// Every frame carries ack, window and sack, so data one way carries the
// acknowledgements of the other. Frames, not bytes, are numbered, from 0
// in each direction: a data frame carries up to MTU-40 bytes and is
// resent as the same frame with fresh acknowledgement fields (so the sum
// keeps the payload's part apart: a resend hashes only 44 bytes again).
// Version 1 carried a CRC-32C there; frame.go says why it changed.
// Version 2 had no shift (byte 3 was reserved): its bitmap always began
// at ack+1.
// Nothing is padded; a frame may be longer than its header and payload
// (a NIC pads short frames), which is why the length is explicit. Frames
// that are short, of another version or kind, with a length beyond the
// frame, with a bad sum, of an unknown session or from or to another MAC
// are counted (DemuxStats) and dropped.
//
// # Loss recovery
//
// The receiver keeps frames that arrive beyond a gap (within its window)
// and advertises them in the SACK bitmap, 64 frames wide. Every other
// acknowledgement's bitmap starts at the 64-frame block of the first
// frame held beyond the gap: a hole wider than the bitmap (a burst the
// receiving NIC or its queue dropped) still shows frames received
// beyond it, so it is found lost by the rule below instead of by the
// timeout. The others report, in turn, the blocks held further on, so
// that the sender learns of them before it would resend them. The sender resends a frame
// that the SACK shows missing when at least three later frames arrived,
// or when a frame sent after it arrived and it has not been acknowledged
// for 1.25 smoothed RTTs (RACK, RFC 8985, which also finds losses at the
// end of a burst where three later frames do not exist); each frame at
// most once per smoothed RTT. With frames in flight and no
// acknowledgement for two RTTs and the delayed-ack time, the last frame
// sent is resent asking for an immediate ack (a tail-loss probe, RFC 8985
// section 7), so that a lost tail is found by SACK rather than by the
// timeout. The retransmission timeout follows RFC 6298 (SRTT and RTTVAR,
// no samples from acks that covered a resent frame, Karn's rule), within
// 10 to 200 ms or twice the smoothed round trip where that is longer (a
// timeout shorter than the round trip fires on every flight), doubling on
// each timeout. A timeout resends the first unacknowledged frame only,
// and the next acknowledgement decides the rest (F-RTO, RFC 5682): if it
// covers a frame of the flight that was never resent, the flight was
// only late (an emulator's receiving vCPU not scheduled, a queue in
// front of it), the timeout is counted spurious, nothing more is resent
// and the window goes back to what it was (RFC 4015); otherwise the
// unacknowledged frames the SACK does not cover are resent in order as
// the congestion window allows: those below the highest frame SACKed if
// there is one (the receiver may hold more than its bitmaps have shown,
// and the rules above find what is lost past it), else all of them, as
// after a second timeout in a row. A
// resent frame is found lost again only by the time rule (frames sent
// after its resend arrived): the count of later frames received says
// nothing about a frame sent after them. A Conn whose peer acknowledges nothing for
// Config.GiveUp while it has data or a close outstanding fails with
// ErrTimeout (a peer that answers probes of a closed window counts as
// alive).
//
// Acknowledgements are sent only when needed, since under an emulator
// each frame costs the receiver an exit to the device model: after every
// min(32, a quarter of the receive buffer's frames) in-order frames; at once on a frame beyond a gap
// (then every third one while gaps remain), on a frame that fills a
// gap, on a duplicate (the sender's ack was probably lost), on a frame
// flagged ack-now, and on the close; when Read opens the window from below a quarter to above a
// half of the buffer (a window update); and otherwise 1 ms after the
// first unacknowledged frame (delayed ack). The sender flags ack-now on
// the last frame of a burst that filled its window, so it waits neither
// for the count nor for the timer.
//
// # Flow and congestion control
//
// The receive buffer holds Config.ReceiveBuffer bytes as whole frames;
// the window is its frames not holding unread data, and its right edge
// never moves back. The sender keeps at most min(peer window, congestion
// window) frames in flight. Congestion control only keeps bursts from
// overflowing the receiving NIC's ring (the link is dedicated): AIMD in
// frames, slow start from 32, then about 8 frames more per window
// acknowledged (not TCP's one: there is no other flow to be fair to),
// halved (to at least 4) on a loss event (once per window of data) and on
// a timeout (to at least 32; back to 32 on a second timeout before the
// first's flight is acknowledged), never above the peer's window. A
// timeout does not restart slow start: under an emulator most timeouts
// are spurious, a receiving vCPU not scheduled for longer than the RTO
// (their resent frames arrive as duplicates), and with one-frame growth a
// window of 300 frames took over a second to recover from one. A sender
// facing a zero window with nothing in flight probes it with an ack-now frame every RTO (backed off to 200 ms), so a
// lost window update cannot deadlock the stream.
//
// # The goroutine
//
// Each Conn has one goroutine that sends everything: data,
// retransmissions, acks, probes and the close, in bursts of up to 64
// frames (Wire.SendFrame with more=true, the last with more=false),
// woken by Write, by Read (window updates), by Deliver (acks to process
// or to send) and by its timer. Deliver only updates the Conn's state
// under its lock and wakes the goroutine: it never waits for the wire.
// The send buffer holds frames, not bytes: Write copies into the payload
// of frames about to be sent (appending to the last one while it is
// unsent), so sending fills in the header in place; a small Write goes
// out at once (nothing like Nagle's algorithm holds it).
//
// # Close
//
// Close stops the Conn at once for its user (blocked calls return
// ErrClosed) but not for its peer: the goroutine goes on sending what
// was written and not acknowledged, then the close frame (a few tries
// once everything else is acknowledged), and the peer's Read returns
// io.EOF after the last byte. Data arriving at a closed Conn is
// acknowledged and dropped. The background work ends when the peer has
// acknowledged the close, the peer closed too, the close went unanswered
// five times, or GiveUp passed; Open of the same session ends it sooner.
// Abort ends it at once, dropping what the peer has not acknowledged: the
// FT engine aborts a session whose peer it has declared lost, rather than
// resend to a dead machine until GiveUp.
//
// # What it does not do
//
// No handshake, no session reuse protection (a new session per
// connection is the caller's business), no half close, no keepalives
// (the FT engine's heartbeats are its own), no authentication or
// encryption (the engine's), no path MTU discovery or fragmentation
// (both ends must use the same MTU), no fairness among several streams
// beyond each one's congestion window, and no routing: it is for one
// Ethernet segment between two machines.
package ethstream
