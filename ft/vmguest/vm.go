package vmguest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/devices"
)

// CPU is what the vendor layer (VT-x, SVM, a host fake) provides per vCPU
// on top of vmm.CPU. Every method runs on the vCPU's own goroutine, on its
// pinned host CPU, between two guest entries: that is the point, since
// only that CPU can drain its own PML log, read its VMCS, or flush its own
// cached translations.
type CPU interface {
	vmm.CPU
	// HarvestOnCPU adds to into the pages this vCPU's own log recorded
	// since its previous call and empties the log. Under VT-x with PML:
	// read GUEST_PML_INDEX, add the GPAs logged above it, reset the index
	// to 511. Without a per-CPU log (D-bit scan only; SVM) it does nothing:
	// the shared tables are scanned by Config.Tables.
	HarvestOnCPU(into *ept.Bitmap) error
	// FlushOnCPU makes this CPU forget cached translations, so a D bit
	// cleared in the shared tables is set again by the next write: VT-x
	// single-context INVEPT of the guest's EPTP; SVM TLB_CONTROL = flush
	// this ASID (or the whole TLB where flush-by-ASID is missing) in the
	// VMCB for the next VMRUN.
	FlushOnCPU() error
	// SetTSCOffset sets the guest's TSC offset (guest TSC = host TSC +
	// offset) from the next entry: VMCS TSC_OFFSET, VMCB TSC_OFFSET.
	SetTSCOffset(offset int64) error
}

// Quiescer is a device whose input is held during a checkpoint pause
// (virtionet.Device: F5).
type Quiescer interface{ Quiesce(on bool) }

// Config describes a VM.
type Config struct {
	CPUs   int
	Memory vmm.GuestMemory
	Pin    func(vcpu int) error
	Unpin  func() error
	NewCPU func(vcpu int) (CPU, error)
	// Tables is the shared dirty-bit scan of the guest's EPT or NPT
	// (ept.ScanSource): it reports and clears every D bit. It runs only
	// while no vCPU is in the guest, and every vCPU flushes (FlushOnCPU)
	// before it enters the guest again. nil: per-CPU logs only.
	Tables ept.DirtySource
	// HostTSC reads this host's TSC (bare metal: RDTSC).
	HostTSC func() uint64
	// TSCOffset is the initial guest TSC offset of a fresh guest.
	TSCOffset int64
	// HarvestTimeout is how long a vCPU may take to answer a harvest
	// request; one that does not is an error (default 50 ms).
	HarvestTimeout time.Duration
}

// VM is a vmm.Machine made into ftmirror's Memory, DirtySource and Guest.
type VM struct {
	M   *vmm.Machine
	Out *Output

	cfg     Config
	cpus    []atomic.Pointer[cpuWrap]
	devs    []string
	quiesce []Quiescer
	host    []uint64 // pages written by host code (MarkDirty), atomic words

	// mu serialises Pause, Resume and Harvest (the engine calls them from
	// one goroutine, but a RunAlone pause must not meet a harvest).
	mu       sync.Mutex
	paused   bool
	pauseErr error         // why the last pause could not promise its harvest or state
	pending  *ept.Bitmap   // pages drained at the pause, for the next Harvest
	carry    *ept.Bitmap   // per-CPU pages of abandoned rounds
	carryMu  sync.Mutex    // guards carry (vCPUs write it)
	snap     *vmm.Snapshot // state captured at the pause
	snapTSC  uint64        // guest TSC at the pause
	tscOff   atomic.Int64  // current guest TSC offset
	tscGen   atomic.Uint64 // bumped when tscOff changes
	scratch  *ept.Bitmap

	stopParts stopParts
}

// stopParts keeps the longest of each part of Pause since it was last
// read: the vCPUs' arrival at an exit (kick, exit, drain), the Machine's
// pause (their release and parking), and the state's capture.
type stopParts struct {
	mu  sync.Mutex
	max [3]time.Duration
}

func (s *stopParts) add(parts ...time.Duration) {
	s.mu.Lock()
	for i, d := range parts {
		s.max[i] = max(s.max[i], d)
	}
	s.mu.Unlock()
}

// PauseParts returns the longest arrival, parking and capture of the
// pauses since the last call, and starts afresh.
func (v *VM) PauseParts() (arrive, park, capture time.Duration) {
	s := &v.stopParts
	s.mu.Lock()
	defer s.mu.Unlock()
	arrive, park, capture = s.max[0], s.max[1], s.max[2]
	s.max = [3]time.Duration{}
	return
}

// ErrUnanswered is wrapped when a vCPU does not answer a harvest request
// in time: the harvest cannot be promised complete (interfaces.go).
var ErrUnanswered = errors.New("vmguest: vCPU did not answer the harvest request")

// New builds the VM's Machine with each vCPU wrapped so that it answers
// harvest requests and applies TSC offsets at its exits.
func New(cfg Config) (*VM, error) {
	if cfg.NewCPU == nil || cfg.HostTSC == nil {
		return nil, fmt.Errorf("vmguest: config needs NewCPU and HostTSC")
	}
	if len(cfg.Memory)%PageSize != 0 || len(cfg.Memory) == 0 {
		return nil, fmt.Errorf("vmguest: memory of %d bytes is not whole pages", len(cfg.Memory))
	}
	if cfg.HarvestTimeout == 0 {
		cfg.HarvestTimeout = 50 * time.Millisecond
	}
	frames := uint64(len(cfg.Memory) / PageSize)
	v := &VM{cfg: cfg, cpus: make([]atomic.Pointer[cpuWrap], max(cfg.CPUs, 0)),
		host: make([]uint64, (frames+63)/64), pending: ept.NewBitmap(frames), carry: ept.NewBitmap(frames),
		scratch: ept.NewBitmap(frames), Out: NewOutput(nil)}
	v.tscOff.Store(cfg.TSCOffset)
	v.tscGen.Store(1)
	m, err := vmm.NewMachine(vmm.MachineConfig{CPUs: cfg.CPUs, Memory: cfg.Memory, Pin: cfg.Pin, Unpin: cfg.Unpin,
		NewCPU: func(i int) (vmm.CPU, error) {
			c, err := cfg.NewCPU(i)
			if err != nil {
				return nil, err
			}
			w := &cpuWrap{inner: c, v: v, i: i, own: ept.NewBitmap(frames)}
			v.cpus[i].Store(w)
			return w, nil
		}})
	if err != nil {
		return nil, fmt.Errorf("vmguest: %w", err)
	}
	v.M = m
	return v, nil
}

// AddDevice registers a device whose state each checkpoint carries, in
// the order added (the secondary must add the same devices in the same
// order).
func (v *VM) AddDevice(name string, s devices.Snapshotter) error {
	if err := v.M.AddDevice(name, s); err != nil {
		return fmt.Errorf("vmguest: %w", err)
	}
	v.devs = append(v.devs, name)
	return nil
}

// AddQuiescer adds a device whose input Pause holds (the virtual NIC).
func (v *VM) AddQuiescer(q Quiescer) { v.quiesce = append(v.quiesce, q) }

// GuestTSC is the guest's TSC now (host TSC plus the offset).
func (v *VM) GuestTSC() uint64 { return v.cfg.HostTSC() + uint64(v.tscOff.Load()) }

// TSCOffset is the current guest TSC offset.
func (v *VM) TSCOffset() int64 { return v.tscOff.Load() }

func (v *VM) setTSCOffset(off int64) {
	v.tscOff.Store(off)
	v.tscGen.Add(1)
}

// NumPages implements ftmirror.Memory.
func (v *VM) NumPages() int { return len(v.cfg.Memory) / PageSize }

// Page implements ftmirror.Memory: the slice aliases guest RAM.
func (v *VM) Page(pfn uint32) []byte {
	o := int(pfn) * PageSize
	return v.cfg.Memory[o : o+PageSize : o+PageSize]
}

// MarkDirty records a write to guest memory by host code (device DMA,
// instruction emulation), which no D bit or PML log sees.
func (v *VM) MarkDirty(gpa uint64, n int) {
	if n <= 0 {
		return
	}
	// The data is written before this is called, so a harvest that swaps
	// the word to zero after seeing the bit has the data (as simguest).
	frames := uint64(len(v.cfg.Memory) / PageSize)
	for f := gpa / PageSize; f <= (gpa+uint64(n)-1)/PageSize && f < frames; f++ {
		atomic.OrUint64(&v.host[f/64], 1<<(f%64))
	}
}

// PageSize is the page size of Memory and of the dirty log.
const PageSize = ftmirror.PageSize
