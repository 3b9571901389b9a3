// Package ftmirror is doppel's fault-tolerance engine: it keeps a
// secondary's copy of the guest identical to the primary's last checkpoint
// and takes over when the primary dies (capabilities F2-F7 of DESIGN.md).
// It is pure Go behind small interfaces (interfaces.go): guest Memory in
// 4 KiB pages, a DirtySource, a Guest that pauses, resumes and saves its
// vCPU and device state as versioned opaque Blobs, an OutputSink (the
// outside world), a Clock (every wait, tick and timestamp of the engine
// goes through it, so tests run timing paths on a fake clock), and the link
// as an io.ReadWriteCloser. On bare
// metal these are EPT-mapped RAM, EPT D bits or PML, the VMCS and device
// models, the NIC, the TSC and the FT-link NIC; tools/ftsim provides host
// versions (ftmirror/simguest and loopback TCP).
//
// # Roles and phases
//
// A Primary runs the guest and serves one secondary at a time
// (Primary.Serve); a Secondary mirrors it (Secondary.Serve) and, once the
// primary is lost, hands back a Takeover: the committed epoch, its state
// blobs and the output that may not have been released yet.
//
// Roles at boot: a node is told its role (primary, secondary), or both
// are told auto with each other's FT-link address. An auto node first
// looks for a running primary at its peer (dials it for 10 s) and, if one
// answers, joins it as secondary: a machine that comes back after a
// failover never takes the guest from the node that runs it. If none
// answers, the node with the lower address becomes the primary and the
// other keeps dialling as secondary. (The engine itself does not elect:
// kernel/ftguest.go applies this rule before creating a Primary or a
// Secondary. Two auto nodes booted into a partition would both find no
// primary; the lower becomes primary and the higher waits, so still only
// one runs the guest.)
//
// Initial sync (F2, sync.go) is a brownout followed by a blackout. Epoch 1
// opens; the dirty log is cleared; every page is sent while the guest runs;
// then rounds of the pages dirtied meanwhile, until a round has at most
// BrownoutTargetPages pages, shrinks by less than 10%, or BrownoutMaxRounds
// is reached. The blackout is an ordinary checkpoint (below) whose END marks
// the copy complete. Pages that are zero on the primary are not sent at all
// (the secondary starts zeroed).
//
// Protected operation (F3, F4, F6, checkpoint.go) runs a checkpoint every
// Epoch:
//
//  1. BEGIN(E) has opened epoch E on the secondary at the start of the
//     epoch (F3's notification).
//  2. Optionally, half way and five sixths of the way through, the pages
//     dirtied so far are harvested and sent while the guest runs (Forward,
//     F6). A page written again after its harvest is harvested again, so a
//     torn copy is corrected below. A checkpoint that starts over half an
//     epoch late (the loop was not scheduled, or the link was slow) first
//     forwards once more, so the pause never copies what the guest wrote
//     during the delay.
//  3. Pause: harvest the dirty set, copy those pages into a snapshot buffer
//     (300 pages = 1.2 MB, about 0.1 ms), save the state blobs, seal the
//     epoch's output; resume. Nothing else happens with the guest stopped:
//     the snapshot (snapshot.go: 1 MiB chunks, reused) is grown while the
//     guest runs, after a checkpoint that used more than half of it.
//     (The simulator has no copy-on-write, so the dirty pages are copied
//     rather than write-protected; on bare metal EPT write protection could
//     replace the copy.)
//  4. Stream the snapshot in GROUP frames of about GroupBytes while the
//     guest runs, then END(E) with the counts, the state and the output.
//  5. The secondary applies each group as it arrives, while later ones are
//     in flight (a reader goroutine checks the next frame while the current
//     one is applied), writing only the 8-byte words that differ
//     (pagediff.Apply, pagediff.ApplyDelta). END commits E and is answered
//     by ACK(E).
//
// Resync (F7): a secondary that joins a primary that has already run (a new
// or repaired node; a returning node is treated as new and starts zeroed)
// is brought into sync in groups across checkpoints while the checkpoints
// continue: each epoch carries ResyncPagesPerEpoch pages of memory, read
// while the guest runs, plus the dirty pages below the resync cursor (pages
// above it will be read later anyway). The epoch whose END finds the cursor
// at the end of memory marks the copy complete.
//
// # Dirty tracking
//
// DirtySource.Harvest may fail, and the engine ends the session when it
// does rather than send a checkpoint that could miss a page. Its contract
// (interfaces.go) puts the hard part on the implementation: on the hardware
// EPT D bits are cached per CPU and INVEPT flushes only the CPU that runs
// it, so the harvest runs on each vCPU's own CPU at a requested VM exit, or
// clears the bits and has every CPU that ran the guest flush and answer
// before Harvest returns.
//
// # Compact encoding
//
// The primary keeps a shadow of what the secondary holds (up to one more
// copy of guest memory: the price of deltas) and sends for each page either
// nothing (unchanged), a zero record, a pagediff delta of the changed words
// (if at most half a page), or the full page. The shadow is filled lazily:
// the sync sends memory without copying it into the shadow (in this host VM
// touching another gigabyte during the sync halved its speed), so the first
// time a page is sent again it goes in full and is shadowed from then on.
// With the simulator's guest writing 128 bytes per dirtied page, once the
// dirtied pages are shadowed a checkpoint puts about 4% of the raw dirty
// bytes on the wire (64 MiB guest); a 1 GiB guest dirtied uniformly takes
// minutes to get there.
//
// # Bytes on the wire
//
// Each GROUP frame, once encoded (zero records, deltas, full pages), is
// compressed whole (Config.Compression: zstd at its fastest level by
// default, s2, or off) and sent as a GROUPZ frame only if that saves at
// least an eighth of it; otherwise it goes as it is (wire, compress.go).
// The decision is measured per group, since memory mixes pages that
// compress well (zeroed and sparse pages, code, text) with ones that do
// not (encrypted or compressed data, and the simulator's random words).
// After a group that did not pay, the next 1, 3, 7, then 8 groups go
// without trying (reset by one that pays), and a group of 8 KiB or more
// is first tried in its first 4 KiB, compressed whole only if that part
// saves an eighth, so incompressible memory costs little CPU (under QEMU
// TCG zstd's tries were 5 % of the primary's CPU in a sync of random
// memory with the backoff alone). Compression comes after the deltas and
// composes with them: a delta's record headers and runs compress too. The
// secondary inflates
// a GROUPZ in its checking stage, so that overlaps the apply of the group
// before, and checks the inflated group like any other. A GROUPZ says its
// inflated size, which must equal the codec's own (s2's block header,
// zstd's frame content size) and is at most wire.MaxPayload; the decoder
// never writes past it, so a small frame cannot inflate without bound.
//
// Which codec: zstd compresses more (text-like pages to 0.23 against s2's
// 0.29) and s2 runs 4-5 times faster (BenchmarkGroupZ in package wire,
// with the figures). In the emulators the FT link is the bottleneck (a
// Bochs NIC carries about 1.5 MB/s, QEMU TCG a few MB/s over TCP), so the
// default is zstd; on a fast link (10 GbE, or tools/ftsim's loopback TCP
// at about 1 GB/s) compression costs more time than it saves and s2 or
// off is the better choice.
//
// # An incomplete epoch never damages the committed one
//
// The secondary applies groups in place under an undo log (undo.go): before
// the first write to a page in an epoch it saves the page's committed
// contents; END forgets them; a session that ends with the epoch open
// rolls them back before Serve returns. Why an undo log rather than a
// staging buffer: with staging, every page would be written twice and the
// apply would happen at END, after the last group, lengthening the time to
// ACK and so the output latency; with the undo log the apply overlaps the
// transfer as F4 asks and commit is O(1). The cost is one 4 KiB copy per
// dirty page per epoch (about the same as staging's) and a rollback that is
// paid only on failure. While the secondary holds no complete epoch yet
// (initial sync, resync) nothing is protected and no undo is kept.
//
// A frame is checked whole (MAC, sequence, then every record of a
// group including each delta's runs) before anything of it is applied, and
// any refused frame ends the session: a stream that lost sync is never
// trusted again. The wire format is in package wire.
//
// # Output commit
//
// Guest output is numbered by its offset in the guest's output stream,
// collected per epoch, and sealed during the pause. It is released to the
// OutputSink only when the secondary has acknowledged a complete epoch ≥ the
// one that produced it (outputcommit.go). Each END carries every sealed
// byte that secondary has not been sent (normally the epoch's own output;
// in a session's first epoch also output held from before), and BEGIN
// carries the offset released so far, as does a RELEASE frame sent right
// after each release (BEGIN went out before the ACK that released the
// epoch before it), so the secondary keeps exactly the committed output
// the world may not have seen: a takeover repeats at most the output of
// the one release that was under way or whose RELEASE was lost with the
// primary: the last acknowledged epoch's, which is the last committed
// epoch or the one before (the primary sends the next END before it
// handles the ACK; Takeover.PrevEpochOut). Before RELEASE, a takeover
// right after a resync repeated every epoch held during it, since the
// first complete ACK releases them all at once. An END carries at most
// 4 MiB of it and says where the guest's output stream ends, and the
// secondary acknowledges itself complete (so output is released) only when
// it holds every byte up to there. After a takeover the
// promoted secondary asks the world where its stream stands (a TCP peer's
// acknowledgement number; ftsim's world tells it) and releases from there:
// every byte once, in order, no gap, no duplicate.
//
// # Input forwarding
//
// Only output is held; input the primary's guest receives after a
// checkpoint is not in it, and is lost if the primary dies before the
// next one. A network guest recovers it (to the guest it is a dropped
// frame), but slowly: an acknowledgement from the outside that only the
// dead primary saw makes the restored guest wait for its TCP
// retransmission timeout, 200 ms or more. So Primary.Input forwards
// records of input as they arrive, in INPUT frames on the session (a
// queue bounded in records and bytes and a goroutine of their own:
// forwarding never blocks the guest, delays a checkpoint by at most the
// queue's bytes, and a record that finds the queue full is dropped and
// counted), and the secondary hands each to Config.Input in order. The engine does not look inside: doppel's records carry a
// received frame and the guest NIC's receive sequence number, which the
// checkpoint's device state also carries, so a promoted secondary gives
// the restored NIC exactly the frames its checkpoint did not hold
// (ft/vmguest/input.go). Replaying input the outside really sent is
// always allowed; the guest sees it a little late, as after a queue. What
// the restored NIC cannot take (its receive buffers and held queue full)
// is dropped, as a NIC drops it.
//
// # Failure detection and split brain
//
// Each side sends a HEARTBEAT when it has sent nothing for half an Interval;
// any bytes arriving count as life, and silence counts only while a side is
// waiting for its peer's bytes: a side that stopped reading because its own
// apply is behind has its peer's data queued and does not drop it. Nor does
// silence count for the time a side was itself not scheduled (its failure
// detector woke late): it wakes with the peer's bytes unread in the socket.
// The HELLO exchange that opens a session is bounded too, by
// Heartbeat.Handshake (twice the deadline, at least a second): a peer
// that connected and then said nothing (it died, or gave up on the
// connection before its answer came, as a secondary redialling over a
// lossy emulated wire does) is dropped with ErrHandshake, and the primary
// accepts the next connection. Without the bound a primary waited on such
// a connection as long as the transport let it: a minute on the ether
// stream, forever on TCP without keepalives, its output held all along.
// A handshake that timed out is not a lost peer: a secondary does not
// promote on it.
//
// A secondary that waits Interval*Misses (the deadline) without a byte, so
// counted, ends the session; a primary waits twice as long before it drops
// its secondary, because dropping closes the link, which a secondary that
// was merely not scheduled takes for the primary's death (rule 2a below):
// a false failover. The longer wait costs nothing, since a primary without
// acks releases nothing anyway; it only delays a new secondary. A link that the peer closed or reset (end of stream, mid-frame
// or between frames; a connection reset or broken pipe) is a lost peer at
// once (ErrPeerLost wrapping the cause). Output to the outside world is
// written by a releaser goroutine of its own, so a slow sink never stops the
// reading of ACKs and heartbeats, and the secondary sends its ACK without
// holding its lock. The rule that keeps a partition from producing two
// output-releasing primaries:
//
//  1. A primary releases output only on an ACK from its secondary, and only
//     within the lease: less than 3/4 of the deadline after it sent the END
//     of the acknowledged epoch. (The secondary last heard the primary no
//     earlier than that END was sent, so it cannot promote on silence
//     before a full deadline after it; the quarter margin absorbs clock
//     rate and scheduling.) When a primary's session ends, for any reason,
//     it first withdraws its release right for that session (waiting out a
//     sink write under way) and only then closes the link.
//  2. A secondary promotes itself only if it holds a complete committed
//     epoch, and only (a) at once if the primary closed or reset the link:
//     on the FT link (a direct cable, no middlebox) that happens only when
//     the primary's process or host is dead, or after the primary withdrew
//     its release right (rule 1); or (b) after the deadline has passed since
//     it last heard the primary, if the link fell silent or carried a
//     refused frame.
//  3. A primary that loses its secondary keeps running the guest but holds
//     all output until a new secondary has a complete copy. A promoted
//     secondary releases directly until a secondary of its holds a
//     complete copy: the old primary can no longer release, since that
//     needs acks from us, and a secondary without a complete copy cannot
//     promote. Alone it releases each output as it is emitted
//     (Primary.RunAlone), not at the end of the epoch: no copy waits for
//     an acknowledgement. While it resyncs a new secondary it releases
//     each epoch's output at the epoch's pause, up to and including the
//     first epoch whose END says complete: that secondary can take over
//     only from that epoch or a later one, which holds everything the
//     released output came from. (It used to hold the output for the
//     whole resync, 17 s of the Linux guest's network in the chain test,
//     and release it in one burst whose RELEASE frame a primary killed
//     right after could lose: the promoted secondary then repeated
//     every line of the resync.)
//  4. A primary that meets a peer knowing a newer generation is fenced.
//     A secondary learns its primary's generation at the HELLO, and a
//     promoted secondary takes that generation plus one
//     (Takeover.Generation), so each failover raises it.
//
// Timing: a killed primary is detected as soon as its kernel closes the
// socket, so ftsim fails over in tens of milliseconds (figures in
// tools/ftsim) whatever the deadline: the time is the kernel's, to tear
// down the dying process, plus well under a millisecond of ours. The
// deadline only bounds the detection of a silent link (a partition, a hung
// host), and it cannot be short on a loaded host: at load 10-20 on 2
// cores ftsim saw a live primary send nothing for 536-834 ms while its
// secondary was running on time, and no failure detector can tell that
// from a dead one. ftsim therefore uses 5 ms heartbeats and a 1 s
// deadline (it was 500 ms); the engine's default is 10 ms x 10. Heartbeats
// share the link with the data, which costs them nothing: any bytes count
// as life, a side counts silence only while it waits for bytes, and a
// heartbeat is never queued behind a stuck send (trySend). On bare metal,
// with no kernel to close a dead host's link, failover is the deadline.
//
// The lease is checked again before each write to the sink, but a write
// that starts just inside the lease can still arrive after it if the
// primary is descheduled in between. That window (and network delay to the
// outside world) is closed at the egress: each side's output carries its
// generation and the egress refuses an older generation once a newer one
// has spoken (tools/ftsim's world does this and counts any such refusal as
// a failure; on bare metal the witness below can do it).
//
// So an isolated primary stalls its output instead of releasing it. The
// price is availability: with two nodes a primary cannot tell a dead
// secondary from a partition, so its output waits for a new secondary. On
// bare metal a third-party witness (a quorum disk or a small arbiter on the
// management network) should grant the release right to exactly one side,
// so that a primary whose secondary died can continue unprotected.
//
// # Limits (not done yet)
//
//   - A returning secondary is treated as new: its memory is cleared and
//     sent again, although most of it may still be current.
//   - Output held while there is no secondary is bounded only by memory
//     (no backpressure on the guest's NIC yet); a new secondary receives it
//     4 MiB per END and counts as complete once it holds all of it.
//   - F5 (the guest NIC reporting "no packets" while a checkpoint holds
//     arriving ones) belongs to the device models behind Guest.Pause; the
//     engine only requires that Pause quiesce devices.
//   - No witness: with two nodes, output stalls when the secondary dies.
//   - INPUT frames queue behind what the session already carries (the
//     mid-epoch pages): input that reached a primary within that delay
//     of its death is lost with it. A lane of its own would close this.
//   - The pause is measured from when Guest.Pause returns (the guest is
//     stopped) to Resume; the time to stop vCPUs is the Guest's.
//
// # Statistics
//
// Stats keeps fixed-size log-linear histograms (32 buckets per power of
// two: percentiles within about 3%, exact maxima) and running means, so a
// run of any length holds the same few tens of kilobytes.
//
// # What was measured
//
// tools/ftsim runs primary and secondary as two processes over loopback TCP
// and prints the figures; its package documentation has the commands and
// the medians measured on the development machine, with how loaded the
// machine was at the time.
package ftmirror
