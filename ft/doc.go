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
package ft
