package vmm

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// RunState is the state of a Machine that every vCPU loop checks between
// two guest entries.
type RunState int32

// Run states. The transitions are Running -> Pausing -> Paused -> Running
// (Pause, Resume) and any -> Stopped (Stop, a guest power-off, an error).
const (
	StateRunning RunState = iota
	// StatePausing: Pause was asked; vCPUs park at their next exit.
	StatePausing
	// StatePaused: every live vCPU is parked at an instruction boundary
	// (after a VM exit, before the next entry); state can be saved.
	StatePaused
	// StateStopped: the vCPU loops have ended or are ending.
	StateStopped
)

func (s RunState) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StatePausing:
		return "pausing"
	case StatePaused:
		return "paused"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("RunState(%d)", int32(s))
}

// CPU is the vendor side of one vCPU (a VMCS and its registers under VT-x;
// a fake in host tests). Every method except Kick runs on the vCPU's own
// goroutine, which the Machine locks to its pinned host thread.
type CPU interface {
	// Step enters the guest and returns after one VM exit was handled,
	// with what the loop does next.
	Step() (Action, error)
	// Kick makes a Step in progress return soon, at an instruction
	// boundary. It may be called from any goroutine at any time.
	Kick()
	// Save returns the vCPU's whole architectural state (registers,
	// VMCS guest state, pending events) as a versioned blob.
	Save() ([]byte, error)
	// Restore loads a blob from Save into a vCPU that has not run yet.
	Restore(state []byte) error
	// Close releases the vCPU (VMCLEAR); the CPU is not used afterwards.
	Close() error
}

// MachineConfig describes a Machine.
type MachineConfig struct {
	// CPUs is the number of vCPUs.
	CPUs int
	// Memory is the guest's RAM, guest-physical 0 to len(Memory).
	Memory GuestMemory
	// Pin binds the calling goroutine to the host CPU of vCPU i (PinThread
	// on bare metal); nil leaves it unpinned (host tests).
	Pin func(vcpu int) error
	// Unpin undoes Pin when the vCPU loop ends; nil does nothing.
	Unpin func() error
	// NewCPU builds vCPU i on its pinned goroutine.
	NewCPU func(vcpu int) (CPU, error)
}

// Device is a named device of a Machine whose state is saved and restored
// with the machine's.
type Device struct {
	Name  string
	State devices.Snapshotter
}

// Machine is one guest: its RAM, its vCPUs each on its own pinned host
// thread, its port and MMIO buses and devices, and the run state that lets
// another goroutine pause every vCPU at an instruction boundary, save the
// whole machine, and resume or stop it.
type Machine struct {
	Ports *IOBus
	MMIO  *MMIOBus
	Mem   GuestMemory

	cfg     MachineConfig
	devices []Device

	state atomic.Int32 // RunState; written under mu
	mu    sync.Mutex
	cond  *sync.Cond
	slots []*cpuSlot
	live  int // vCPU loops that have not ended
	// parked counts live vCPUs waiting in gate.
	parked int
	// halted counts live vCPUs whose last Step returned ActionPark.
	halted  int
	started bool
	err     error // the first error that stopped the machine
	done    chan struct{}
	restore [][]byte // vCPU blobs loaded by Restore, applied at Start
	// saveGen numbers Save's requests: each parked vCPU saves itself on
	// its own thread (VMREAD works only where its VMCS is current).
	saveGen uint64
	// saveOnPark (PauseAndSave): the vCPU that parks last starts a save
	// request at once, so every vCPU saves itself without waiting for
	// Pause's caller to wake and ask. parkSaveGen is that request's
	// number, valid until the machine runs again.
	saveOnPark  bool
	parkSaveGen uint64
}

type cpuSlot struct {
	cpu    CPU
	parked bool
	// halted: the vCPU's last Step returned ActionPark (halted with
	// interrupts disabled).
	halted bool
	exits  atomic.Uint64
	// savedGen is the save request this vCPU answered last; saved and
	// saveErr its answer.
	savedGen uint64
	saved    []byte
	saveErr  error
}

// Errors of the Machine's run-state operations.
var (
	ErrNotPaused = errors.New("vmm: machine is not paused")
	ErrStopped   = errors.New("vmm: machine is stopped")
	ErrStarted   = errors.New("vmm: machine already started")
)

// ErrAllHalted is the reason a machine stops when every live vCPU halted
// with interrupts disabled: nothing inside the guest can wake any of them
// (an operating system's last act on a machine it cannot power off, or a
// panic that parks all CPUs).
var ErrAllHalted = errors.New("vmm: every vCPU halted with interrupts disabled")

// HaltWaker is an optional method of a CPU whose Step returned
// ActionPark: WakePending reports that an event that ends the halt
// (NMI, INIT) is already on its way. It is called from another vCPU's
// goroutine, so it must be safe for that. The Machine asks it before it
// stops because every vCPU is parked: a vCPU that sent an INIT and then
// halted must not stop a machine whose target has not woken yet.
type HaltWaker interface {
	WakePending() bool
}

// NewMachine makes a machine in the Paused state with empty buses; add
// devices, load the guest or Restore a snapshot, then Start it.
func NewMachine(cfg MachineConfig) (*Machine, error) {
	if cfg.CPUs < 1 || cfg.CPUs > 64 {
		return nil, fmt.Errorf("vmm: machine: %d vCPUs (want 1 to 64)", cfg.CPUs)
	}
	if cfg.NewCPU == nil {
		return nil, fmt.Errorf("vmm: machine: no vCPU constructor")
	}
	m := &Machine{
		Ports: &IOBus{},
		MMIO:  &MMIOBus{},
		Mem:   cfg.Memory,
		cfg:   cfg,
		slots: make([]*cpuSlot, cfg.CPUs),
		done:  make(chan struct{}),
	}
	for i := range m.slots {
		m.slots[i] = &cpuSlot{}
	}
	m.cond = sync.NewCond(&m.mu)
	m.state.Store(int32(StatePaused))
	return m, nil
}

// AddDevice registers a device whose state Save and Restore carry. Names
// must be unique; the device's bus mappings are made separately.
func (m *Machine) AddDevice(name string, s devices.Snapshotter) error {
	for _, d := range m.devices {
		if d.Name == name {
			return fmt.Errorf("vmm: machine: device %q added twice", name)
		}
	}
	m.devices = append(m.devices, Device{Name: name, State: s})
	return nil
}

// State returns the current run state.
func (m *Machine) State() RunState { return RunState(m.state.Load()) }

// Start starts one goroutine per vCPU (pinned by cfg.Pin) and runs the
// guest. It returns when every vCPU has been built and, after a Restore,
// loaded with its saved state; a failure there stops the machine and is
// returned.
func (m *Machine) Start() error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return ErrStarted
	}
	m.started = true
	m.live = len(m.slots)
	m.mu.Unlock()
	ready := make(chan error, len(m.slots))
	for i := range m.slots {
		go m.loop(i, ready)
	}
	var errs []error
	for range m.slots {
		if err := <-ready; err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		m.Stop(err)
		m.Wait()
		return err
	}
	m.mu.Lock()
	if m.State() == StatePaused {
		m.setState(StateRunning)
		m.cond.Broadcast()
	}
	m.mu.Unlock()
	return nil
}

// loop is vCPU i's goroutine: build the vCPU on the pinned thread, then
// alternate between the run-state gate and guest entries.
func (m *Machine) loop(i int, ready chan<- error) {
	defer m.exited(i)
	if m.cfg.Pin != nil {
		if err := m.cfg.Pin(i); err != nil {
			ready <- fmt.Errorf("vmm: vcpu %d: %w", i, err)
			return
		}
		if m.cfg.Unpin != nil {
			defer m.cfg.Unpin()
		}
	}
	c, err := m.cfg.NewCPU(i)
	if err != nil {
		ready <- fmt.Errorf("vmm: vcpu %d: %w", i, err)
		return
	}
	defer c.Close()
	if m.restore != nil {
		if err := c.Restore(m.restore[i]); err != nil {
			ready <- fmt.Errorf("vmm: vcpu %d: restore: %w", i, err)
			return
		}
	}
	m.mu.Lock()
	m.slots[i].cpu = c
	m.mu.Unlock()
	ready <- nil
	for m.gate(i) {
		act, err := c.Step()
		m.slots[i].exits.Add(1)
		if err != nil {
			m.Stop(fmt.Errorf("vmm: vcpu %d: %w", i, err))
			return
		}
		switch act {
		case ActionStop:
			m.Stop(nil)
			return
		case ActionPark:
			m.setHalted(i, true)
		default:
			if m.slots[i].halted {
				m.setHalted(i, false)
			}
		}
	}
}

// setHalted records whether vCPU i is parked in a halt with interrupts
// disabled and stops the machine with ErrAllHalted once every live vCPU
// is, and none has a wake-up on its way.
func (m *Machine) setHalted(i int, on bool) {
	m.mu.Lock()
	s := m.slots[i]
	if s.halted != on {
		s.halted = on
		if on {
			m.halted++
		} else {
			m.halted--
		}
	}
	all := on && m.halted == m.live && m.State() != StateStopped
	if all {
		for _, o := range m.slots {
			if w, ok := o.cpu.(HaltWaker); ok && o.halted && w.WakePending() {
				all = false
			}
		}
	}
	m.mu.Unlock()
	if all {
		m.Stop(fmt.Errorf("%w (%d vCPUs)", ErrAllHalted, len(m.slots)))
	}
}

// gate returns true when vCPU i may enter the guest, parking it while the
// machine is pausing or paused; false when the machine stopped. The fast
// path is one atomic load.
func (m *Machine) gate(i int) bool {
	if m.State() == StateRunning {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.slots[i]
	for {
		switch m.State() {
		case StateRunning:
			if s.parked {
				s.parked = false
				m.parked--
			}
			return true
		case StateStopped:
			return false
		}
		if !s.parked {
			s.parked = true
			m.parked++
			m.cond.Broadcast()
			if m.saveOnPark && m.parked == m.live {
				// Every vCPU is parked: the state is a consistent cut
				// (no vCPU can change another's any more), so saving
				// may start now, beginning with this one, already
				// awake on its own thread.
				m.saveOnPark = false
				m.saveGen++
				m.parkSaveGen = m.saveGen
			}
		}
		if s.savedGen != m.saveGen && s.cpu != nil {
			s.savedGen = m.saveGen
			c := s.cpu
			m.mu.Unlock()
			b, err := c.Save()
			m.mu.Lock()
			s.saved, s.saveErr = b, err
			m.cond.Broadcast()
			continue
		}
		m.cond.Wait()
	}
}

func (m *Machine) exited(i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slots[i].parked {
		m.slots[i].parked = false
		m.parked--
	}
	if m.slots[i].halted {
		m.slots[i].halted = false
		m.halted--
	}
	m.slots[i].cpu = nil
	m.live--
	if m.live == 0 {
		m.setState(StateStopped)
		close(m.done)
	}
	m.cond.Broadcast()
}

// setState stores s; m.mu is held.
func (m *Machine) setState(s RunState) { m.state.Store(int32(s)) }

// kickAll kicks every vCPU that is not parked yet; m.mu is held.
func (m *Machine) kickAll() {
	for _, s := range m.slots {
		if s.cpu != nil && !s.parked {
			s.cpu.Kick()
		}
	}
}

// kickRetry is how often Pause kicks again the vCPUs that have not parked.
// A kick can miss: a vendor CPU signals a vCPU that is in the guest, and
// one that enters right after the kick looked (an NMI that lands in the
// host just before the entry) runs on until its next exit of its own,
// which under Bochs with a guest at IF=0 is the 84 ms preemption timer.
const kickRetry = time.Millisecond

// rekick wakes Pause's wait every kickRetry until stop is closed.
func (m *Machine) rekick(stop <-chan struct{}) {
	t := time.NewTicker(kickRetry)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			m.mu.Lock()
			m.cond.Broadcast()
			m.mu.Unlock()
		}
	}
}

// Pause stops every vCPU at an instruction boundary and returns when all
// are parked (the machine is then Paused). Pausing a paused machine is a
// no-op; a stopped one is ErrStopped.
func (m *Machine) Pause() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.State() {
	case StatePaused:
		return nil
	case StateStopped:
		return ErrStopped
	case StateRunning:
		m.setState(StatePausing)
	}
	if m.parked < m.live {
		stop := make(chan struct{})
		defer close(stop) // before the deferred Unlock: rekick may wait for mu
		go m.rekick(stop)
	}
	for m.State() == StatePausing && m.parked < m.live {
		m.kickAll()
		m.cond.Wait()
	}
	if m.State() == StateStopped {
		return ErrStopped
	}
	m.setState(StatePaused)
	return nil
}

// Resume lets paused vCPUs enter the guest again.
func (m *Machine) Resume() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.State() {
	case StateStopped:
		return ErrStopped
	case StateRunning:
		return nil
	}
	if !m.started {
		return fmt.Errorf("vmm: resume before start: %w", ErrNotPaused)
	}
	m.setState(StateRunning)
	m.saveOnPark, m.parkSaveGen = false, 0 // the state moves on
	m.cond.Broadcast()
	return nil
}

// Stop ends the machine: every vCPU leaves its loop at its next exit. err
// is the reason (nil for an orderly power-off); the first reason stays.
func (m *Machine) Stop(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.State() != StateStopped && m.err == nil {
		m.err = err
	}
	if !m.started {
		m.setState(StateStopped)
		close(m.done)
		m.started = true
		return
	}
	if m.live > 0 {
		m.setState(StateStopped)
		m.kickAll()
		m.cond.Broadcast()
	}
}

// Wait blocks until every vCPU loop has ended and returns the reason the
// machine stopped (nil for a power-off or Stop(nil)).
func (m *Machine) Wait() error {
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Done is closed when every vCPU loop has ended.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Exits returns the number of guest entries each vCPU made. Meaningful
// while paused or stopped.
func (m *Machine) Exits() []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := make([]uint64, len(m.slots))
	for i, s := range m.slots {
		n[i] = s.exits.Load()
	}
	return n
}

// Snapshot is a whole saved machine: every vCPU, every device by name and
// all of guest memory.
type Snapshot struct {
	CPUs    [][]byte
	Devices map[string][]byte
	Memory  []byte
}

// Save saves the paused machine. The snapshot shares nothing with it.
func (m *Machine) Save() (*Snapshot, error) { return m.SaveTo(nil) }

// SaveTo is Save with guest memory copied into mem (its length must be
// the machine's), for instance the fresh memory the machine will be
// restored in, instead of a new allocation: a guest's RAM may be larger
// than what the host has left for its heap.
func (m *Machine) SaveTo(mem GuestMemory) (*Snapshot, error) {
	if mem != nil && len(mem) != len(m.Mem) {
		return nil, fmt.Errorf("vmm: save: %d bytes of memory for a %d-byte guest", len(mem), len(m.Mem))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.saveState()
	if err != nil {
		return nil, err
	}
	if mem == nil {
		mem = make(GuestMemory, len(m.Mem))
	}
	copy(mem, m.Mem)
	s.Memory = mem
	return s, nil
}

// SaveState is Save without guest memory (Snapshot.Memory is nil): the
// vCPUs and devices only. A checkpoint uses it, since it carries memory
// as dirty pages and copying all of RAM in every pause would dominate it.
func (m *Machine) SaveState() (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saveState()
}

// BeginPause moves a running machine to pausing without waiting: vCPUs
// that reach the gate from now on park there, and Pause waits for them.
// (A caller that holds its vCPUs at an exit, as the FT engine's harvest
// round does, releases them after BeginPause, so they park instead of
// entering the guest.) With saveOnPark the vCPU that parks last starts a
// save request at once, which the next SaveState collects: each vCPU
// saves itself while still awake at its exit, instead of being woken
// again after Pause's caller has been, one cross-CPU round trip less in
// a checkpoint's pause.
func (m *Machine) BeginPause(saveOnPark bool) {
	m.mu.Lock()
	if m.State() == StateRunning {
		m.setState(StatePausing)
		m.saveOnPark = saveOnPark
	}
	m.mu.Unlock()
}

// PauseAndSave is Pause followed by SaveState, the vCPUs saving
// themselves as they park (BeginPause).
func (m *Machine) PauseAndSave() (*Snapshot, error) {
	m.BeginPause(true)
	if err := m.Pause(); err != nil {
		return nil, err
	}
	return m.SaveState()
}

// saveState saves the vCPUs and devices, under the save request the last
// parked vCPU started if there is one, else a new one; m.mu is held.
func (m *Machine) saveState() (*Snapshot, error) {
	if !m.started {
		return nil, fmt.Errorf("vmm: save before start: %w", ErrNotPaused)
	}
	if m.State() != StatePaused {
		return nil, fmt.Errorf("vmm: save in state %v: %w", m.State(), ErrNotPaused)
	}
	s := &Snapshot{Devices: make(map[string][]byte, len(m.devices))}
	for i, sl := range m.slots {
		if sl.cpu == nil {
			return nil, fmt.Errorf("vmm: save: vcpu %d has ended", i)
		}
	}
	// Every vCPU saves itself on its own thread, parked in gate.
	m.saveOnPark = false
	if m.parkSaveGen == 0 || m.parkSaveGen != m.saveGen {
		m.saveGen++
		m.cond.Broadcast()
	}
	m.parkSaveGen = 0 // one snapshot per request
	gen := m.saveGen
	for {
		done := true
		for _, sl := range m.slots {
			if sl.savedGen != gen || sl.saved == nil && sl.saveErr == nil {
				done = false
			}
		}
		if done || m.State() != StatePaused {
			break
		}
		m.cond.Wait()
	}
	if m.State() != StatePaused {
		return nil, fmt.Errorf("vmm: save: machine became %v", m.State())
	}
	for i, sl := range m.slots {
		if sl.saveErr != nil {
			return nil, fmt.Errorf("vmm: save vcpu %d: %w", i, sl.saveErr)
		}
		s.CPUs = append(s.CPUs, sl.saved)
		sl.saved, sl.saveErr = nil, nil
	}
	for _, d := range m.devices {
		b, err := d.State.Save()
		if err != nil {
			return nil, fmt.Errorf("vmm: save device %s: %w", d.Name, err)
		}
		s.Devices[d.Name] = b
	}
	return s, nil
}

// Restore loads s into a machine that has not started: the same number of
// vCPUs, the same devices by name, the same memory size. Devices and
// memory are loaded now, vCPUs on their own threads at Start. On error
// the machine must not be started.
func (m *Machine) Restore(s *Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return ErrStarted
	}
	if len(s.CPUs) != len(m.slots) {
		return fmt.Errorf("vmm: restore: snapshot has %d vCPUs, machine %d", len(s.CPUs), len(m.slots))
	}
	if len(s.Memory) != len(m.Mem) {
		return fmt.Errorf("vmm: restore: snapshot has %d bytes of memory, machine %d", len(s.Memory), len(m.Mem))
	}
	if len(s.Devices) != len(m.devices) {
		return fmt.Errorf("vmm: restore: snapshot has %d devices, machine %d", len(s.Devices), len(m.devices))
	}
	for _, d := range m.devices {
		b, ok := s.Devices[d.Name]
		if !ok {
			return fmt.Errorf("vmm: restore: snapshot lacks device %s", d.Name)
		}
		if err := d.State.Restore(b); err != nil {
			return fmt.Errorf("vmm: restore device %s: %w", d.Name, err)
		}
	}
	if len(m.Mem) > 0 && &m.Mem[0] != &s.Memory[0] {
		copy(m.Mem, s.Memory)
	}
	m.restore = s.CPUs
	return nil
}

// Size is the snapshot's size in bytes (what Encode writes).
func (s *Snapshot) Size() int {
	n := 0
	for _, c := range s.CPUs {
		n += len(c)
	}
	for k, d := range s.Devices {
		n += len(k) + len(d)
	}
	return n + len(s.Memory)
}

const (
	snapshotMagic   = "DVM1"
	snapshotVersion = 1
	maxSnapshotPart = 1<<31 - 1 // the encoding's length prefix is 32 bits
)

// EncodeState is Encode without the memory (an empty memory field): the
// vCPU and device state, for when the memory travels separately.
func (s *Snapshot) EncodeState() []byte {
	m := s.Memory
	s.Memory = nil
	defer func() { s.Memory = m }()
	return s.Encode()
}

// Encode writes the snapshot in the devices state encoding: vCPU count and
// blobs, device count and (name, blob) pairs sorted by name, memory.
func (s *Snapshot) Encode() []byte {
	e := devices.NewEncoder(snapshotMagic, snapshotVersion)
	e.U32(uint32(len(s.CPUs)))
	for _, c := range s.CPUs {
		e.Bytes(c)
	}
	names := make([]string, 0, len(s.Devices))
	for k := range s.Devices {
		names = append(names, k)
	}
	sort.Strings(names)
	e.U32(uint32(len(names)))
	for _, k := range names {
		e.Bytes([]byte(k))
		e.Bytes(s.Devices[k])
	}
	e.Bytes(s.Memory)
	return e.Finish()
}

// DecodeSnapshot parses what Encode wrote; a bad blob is an error wrapping
// devices.ErrBadState.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	d := devices.NewDecoder(b, snapshotMagic, snapshotVersion)
	s := &Snapshot{Devices: map[string][]byte{}}
	n := d.U32()
	d.Check(n <= 64, "%d vCPUs", n)
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		s.CPUs = append(s.CPUs, d.Bytes(1<<20))
	}
	n = d.U32()
	d.Check(n <= 1024, "%d devices", n)
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		name := string(d.Bytes(256))
		s.Devices[name] = d.Bytes(1 << 24)
	}
	s.Memory = d.Bytes(maxSnapshotPart)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("vmm: snapshot: %w", err)
	}
	return s, nil
}
