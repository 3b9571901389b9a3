// Package ft is the bare-metal side of doppel's fault tolerance: it runs
// the ftmirror engine across the FT link, a TCP session on the dedicated
// NIC through doppel's network stack (net/netstack), keeps the link's
// state and counters for the shell (`ft link`) and the management server,
// and records each checkpoint for the management page's plot.
//
// For now the protected guest is ftmirror's synthetic guest
// (ftmirror/simguest): `doppel.ft.sim=primary|secondary` runs Sim, which
// does between two doppel kernels what tools/ftsim does between two
// processes, and prints the same figures and the same verification on the
// console:
//
//  1. Baseline: the secondary connects to the primary's baseline port
//     (Port+1) and sends its MAC; the primary sends ProbeBytes of raw
//     Ethernet probe frames (link.EtherTypeProbe, no IP) and then as many
//     bytes over TCP; the secondary prints both received rates, the raw
//     throughput of the wire that the FT link's goodput is compared with.
//  2. The secondary connects to Port and the engine runs: initial sync,
//     then a checkpoint every epoch. The primary prints the sync time and
//     rate and, every Report interval, the checkpoint figures.
//  3. When the primary dies (a test kills its emulator, or a kill point
//     given by doppel.ft.sim.kill cuts its link), the secondary waits out
//     the heartbeat deadline, takes over, checks that its memory equals the
//     synthetic guest replayed to the committed operation count and that
//     the committed output is exactly the guest's, runs the guest as the
//     new primary for a while, checks the released output stream again and
//     prints `verify: ok` or `verify: mismatch` with details.
//
// The pre-shared key of the simulation is a constant (SimPSK); a real pair
// would provision one.
//
// # The protected guest
//
// `doppel.ft.role=primary|secondary` (kernel/ftguest.go) protects a real
// guest instead: the VM (ft/vmguest over the AMD-V PC board, the nested
// page tables' D bits as the dirty log) is the engine's Memory,
// DirtySource and Guest. The primary loads and runs doppel.guest and
// serves each secondary that connects to DefaultPort on the FT NIC; the
// secondary (doppel.ft.peer: the primary's address) builds the same VM
// without running it, mirrors into its RAM, and when the primary is lost
// (heartbeat deadline, or the link closed) restores the last committed
// epoch into it and runs the guest as a primary of the next generation.
// The guest's serial output is released on the console only once the
// checkpoint that produced it is acknowledged, in whole lines
// (vmguest.LineBuffer), and the promoted secondary replays the committed
// output from the offset the old primary had released when it opened its
// last epoch: a line of that epoch may appear twice, none is lost.
// ProtectionState prints each change of protection (unprotected, syncing
// with the round, protected, mirroring, failed over) as an `ft:
// protection:` line and /status shows it; Kill is the kill points both
// modes take (doppel.ft.kill, doppel.ft.sim.kill).
//
// `doppel.ft.role=auto` elects by the rule in ftmirror/doc.go ("Roles at
// boot"). A promoted secondary serves a new secondary (the old primary's
// machine, restarted), brought up to date in groups while the guest runs
// (F7).
//
// # Transports
//
// A session's byte stream is the secondary's choice (doppel.ft.transport):
// TCP through the network stack, or net/ethstream's frames of their own
// EtherType on the FT NIC, a reliable stream with its own loss recovery
// that does less per frame than TCP. The primary serves both (Listen):
// TCP sessions on the session port, and ether rendezvous on EtherPort, a
// TCP exchange of the two MAC addresses, a session number and the MTUs,
// after which the session runs on the stream and the TCP connection is
// closed. The simulation's baseline measures the stream too when the
// secondary chose it.
package ft
