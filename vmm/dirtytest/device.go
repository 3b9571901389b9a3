package dirtytest

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
)

// ProbeMarker is xor'ed with a probe's address to make the value the guest
// writes there.
const ProbeMarker = 0x5A5A_5A5A

// DefaultCounts are the draws per round, cycled: below, at and above the
// 512-entry PML log, up to many thousands.
var DefaultCounts = []uint32{1, 3, 64, 511, 512, 513, 1000, 2048, 4096, 9000}

// Config sets up a Device.
type Config struct {
	Rounds  int
	Seed    uint32
	MemSize uint32   // guest RAM bytes, at least MinMemSize
	Counts  []uint32 // draws per round, cycled; DefaultCounts if empty
	Source  ept.DirtySource
	Mode    string // "pml" or "scan", for the messages
	Out     io.Writer
	// Clock returns a cycle count (the TSC; under Bochs about one per
	// instruction) to measure each harvest; nil skips the measure.
	Clock func() uint64
	// Exits returns the vCPU's exit counters, to print exits per round.
	Exits func() *[vmm.NumExitReasons]uint64
	// Probes are the guest-physical addresses of the isolation probe.
	Probes []uint64
	// ReadGuest reads 4 bytes of guest RAM at gpa through the EPT
	// mapping, failing if gpa is not guest RAM.
	ReadGuest func(gpa uint64) (uint32, error)
	// VMExit, when set, runs the VM-exit phases after the rounds and the
	// probe (vmexit.go).
	VMExit *VMExitConfig
}

// Device is the doppel test port and the checks behind it.
type Device struct {
	cfg       Config
	frames    uint64
	round     int
	exact     int
	reported  *ept.Bitmap
	nreported uint32
	harvest   *ept.Bitmap
	exits     [vmm.NumExitReasons]uint64

	drainCycles uint64 // PML drains at PML-full exits this round
	drains      int

	probing    bool
	probeIdx   int
	probe      uint64 // outstanding probe address
	fixup      uint32
	violations int
	probeFails []string
	probeDone  bool

	vx *vmexitPhases

	// Finished is set once the rounds and the probe are over.
	Finished bool
	// Err is set when a check failed.
	Err error
}

// NewDevice validates cfg and returns a Device.
func NewDevice(cfg Config) (*Device, error) {
	if cfg.MemSize < MinMemSize || cfg.MemSize%4096 != 0 {
		return nil, fmt.Errorf("dirtytest: guest memory %#x: need a 4 KiB multiple of at least %d MiB", cfg.MemSize, MinMemSize>>20)
	}
	if cfg.Source == nil || cfg.Out == nil {
		return nil, fmt.Errorf("dirtytest: no dirty source or console")
	}
	if len(cfg.Counts) == 0 {
		cfg.Counts = DefaultCounts
	}
	frames := uint64(cfg.MemSize) / 4096
	d := &Device{cfg: cfg, frames: frames, reported: ept.NewBitmap(frames), harvest: ept.NewBitmap(frames)}
	if cfg.VMExit != nil {
		if cfg.Exits == nil || cfg.VMExit.HostTicks == nil {
			return nil, fmt.Errorf("dirtytest: the VM-exit phases need the exit counters and a host tick counter")
		}
		d.vx = &vmexitPhases{cfg: *cfg.VMExit, d: d}
	}
	return d, nil
}

// ParseCounts reads a comma-separated list of draws per round ("" means
// DefaultCounts).
func ParseCounts(s string) ([]uint32, error) {
	if s == "" {
		return DefaultCounts, nil
	}
	var c []uint32
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("dirtytest: draws per round %q: %w", s, err)
		}
		c = append(c, uint32(n))
	}
	return c, nil
}

// FormatCounts writes counts the way ParseCounts reads them.
func FormatCounts(c []uint32) string {
	s := make([]string, len(c))
	for i, n := range c {
		s[i] = strconv.FormatUint(uint64(n), 10)
	}
	return strings.Join(s, ",")
}

func (d *Device) printf(format string, a ...any) { fmt.Fprintf(d.cfg.Out, format+"\n", a...) }

func (d *Device) fail(err error) {
	if d.Err == nil {
		d.Err = err
	}
}

// Seed returns the seed of round k.
func (d *Device) Seed(k int) uint32 { return d.cfg.Seed + uint32(k)*0x9E37_79B9 }

// Count returns the draws of round k.
func (d *Device) Count(k int) uint32 { return d.cfg.Counts[k%len(d.cfg.Counts)] }

// PortIn implements vmm.PortDevice.
func (d *Device) PortIn(off uint16, size int) uint32 {
	switch off {
	case PortCmd:
		return d.command()
	case PortSeed:
		d.startRound()
		return d.Seed(d.round)
	case PortCount:
		return d.Count(d.round)
	case PortMemSize:
		return d.cfg.MemSize
	case PortProbe:
		return d.nextProbe()
	case PortVersion:
		return ProtocolVersion
	case PortSpin:
		if d.vx != nil {
			return d.vx.spinStart()
		}
		return 0
	}
	return ^uint32(0)
}

// PortOut implements vmm.PortDevice.
func (d *Device) PortOut(off uint16, size int, v uint32) {
	switch off {
	case PortPage:
		d.reported.Set(uint64(v))
		d.nreported++
	case PortDone:
		d.endRound(v)
	case PortFixup:
		d.fixup = v
	case PortProbed:
		d.probeLanded()
	case PortSpun:
		if d.vx != nil {
			d.vx.spinEnd()
		}
	case PortCPUID:
		if d.vx != nil {
			d.vx.cpuidValue(v)
		}
	case PortMark:
		if d.vx != nil {
			d.vx.mark()
		}
	}
}

func (d *Device) command() uint32 {
	switch {
	case d.round < d.cfg.Rounds:
		return CmdRound
	case len(d.cfg.Probes) > 0 && !d.probeDone:
		d.probing = true
		return CmdProbe
	}
	if !d.Finished {
		d.Finished = true
		if d.probing {
			d.probeSummary()
		}
		d.printf("ept-dirty: done %d/%d", d.exact, d.cfg.Rounds)
		if d.exact != d.cfg.Rounds {
			d.fail(fmt.Errorf("dirtytest: %d of %d rounds exact", d.exact, d.cfg.Rounds))
		}
	}
	if d.vx != nil {
		return d.vx.next()
	}
	return CmdStop
}

// startRound drops what was dirtied before the round's first write.
func (d *Device) startRound() {
	d.reported.Reset()
	d.nreported = 0
	d.harvest.Reset()
	if err := d.cfg.Source.Harvest(d.harvest); err != nil {
		d.fail(fmt.Errorf("dirtytest: harvest before round %d: %w", d.round, err))
	}
	d.harvest.Reset()
	if d.cfg.Exits != nil {
		d.exits = *d.cfg.Exits()
	}
	d.drainCycles, d.drains = 0, 0
}

// AddDrain records a PML drain at a PML-full exit and its cost in Clock
// cycles: part of the round's harvest cost.
func (d *Device) AddDrain(cycles uint64) {
	d.drainCycles += cycles
	d.drains++
}

func (d *Device) endRound(n uint32) {
	k := d.round
	d.round++
	var t0, t1 uint64
	if d.cfg.Clock != nil {
		t0 = d.cfg.Clock()
	}
	err := d.cfg.Source.Harvest(d.harvest)
	if d.cfg.Clock != nil {
		t1 = d.cfg.Clock()
	}
	if err != nil {
		d.printf("ept-dirty: mismatch round=%d harvest failed: %v", k, err)
		d.fail(err)
		return
	}
	r := Compare(Model(d.Seed(k), d.Count(k), d.cfg.MemSize), d.frames, d.reported, n, d.nreported, d.harvest)
	if r.OK() {
		d.exact++
		d.printf("ept-dirty: exact round=%d pages=%d extra=%d", k, r.Pages, len(r.Extra))
		if len(r.Extra) > 0 {
			d.printf("ept-dirty: extra round=%d frames=%s (guest stack/code)", k, hexList(r.Extra))
		}
	} else {
		d.printf("ept-dirty: mismatch round=%d %s", k, r)
		d.fail(fmt.Errorf("dirtytest: round %d: %s", k, r))
	}
	if d.cfg.Clock != nil {
		d.printf("ept-dirty: harvest round=%d mode=%s dirty=%d cycles=%d (final %d + %d PML-full drains %d)",
			k, d.cfg.Mode, d.harvest.Count(), t1-t0+d.drainCycles, t1-t0, d.drains, d.drainCycles)
	}
	if d.cfg.Exits != nil {
		d.printf("ept-dirty: exits round=%d %s", k, exitDelta(&d.exits, d.cfg.Exits()))
	}
}

func exitDelta(before, after *[vmm.NumExitReasons]uint64) string {
	var s []string
	for r := range after {
		if n := after[r] - before[r]; n != 0 {
			s = append(s, fmt.Sprintf("%s=%d", strings.ReplaceAll(vmm.ExitReasonBasic(r).String(), " ", "-"), n))
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

func hexList(f []uint64) string {
	const max = 16
	var s []string
	for i, x := range f {
		if i == max {
			s = append(s, fmt.Sprintf("...(%d more)", len(f)-max))
			break
		}
		s = append(s, fmt.Sprintf("%#x", x))
	}
	return strings.Join(s, ",")
}
