package vmguest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/wire"
)

var testPSK = bytes.Repeat([]byte{0x5a}, wire.KeySize)

// tap records every byte a guest handed to its engine, in order.
type tap struct {
	mu   sync.Mutex
	data []byte
}

func (t *tap) wrap(emit func([]byte)) func([]byte) {
	return func(b []byte) {
		t.mu.Lock()
		t.data = append(t.data, b...)
		t.mu.Unlock()
		emit(b)
	}
}

func (t *tap) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.data...)
}

// world is the outside: one Splitter (console and NIC) fed by whoever
// releases, which records the raw stream, and checks that the primary
// never releases past what the secondary has committed.
type world struct {
	mu      sync.Mutex
	raw     []byte
	console bytes.Buffer
	nic     nicRec
	split   *Splitter
	errs    []error
	limit   func() (uint64, bool) // stream end of the secondary's committed epoch
}

type worldSink struct {
	w   *world
	who string
}

func (s worldSink) Release(off uint64, b []byte) error {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.who == "primary" {
		if end, ok := w.limit(); !ok || off+uint64(len(b)) > end {
			err := fmt.Errorf("primary released [%d,%d) beyond the committed end %d (ok %v)", off, off+uint64(len(b)), end, ok)
			w.errs = append(w.errs, err)
			return err
		}
	}
	if err := w.split.Release(off, b); err != nil {
		err = fmt.Errorf("%s: %w", s.who, err)
		w.errs = append(w.errs, err)
		return err
	}
	w.raw = append(w.raw, b...)
	return nil
}

// capture is the primary at a checkpoint pause.
type capture struct {
	mem      []byte
	blobs    []ftmirror.Blob
	emitted  uint64
	quiesced bool
}

func TestMirrorFailover(t *testing.T) {
	cases := []struct {
		kill ftmirror.Point
		pml  bool
		fwd  bool
	}{
		{ftmirror.PointBegin, false, false},
		{ftmirror.PointMidEpoch, true, true},
		{ftmirror.PointPaused, false, true},
		{ftmirror.PointBetweenGroups, true, false},
		{ftmirror.PointBeforeEnd, false, false},
		{ftmirror.PointAfterEnd, true, false},
		{ftmirror.PointAcked, false, true},
		{ftmirror.PointMidRelease, true, false},
		{ftmirror.PointReleased, false, false},
	}
	for _, c := range cases {
		mode := map[bool]string{false: "dbit", true: "pml"}[c.pml]
		t.Run(fmt.Sprintf("%s-%s", c.kill, mode), func(t *testing.T) {
			runFailover(t, c.kill, c.pml, c.fwd)
		})
	}
}

func runFailover(t *testing.T, kill ftmirror.Point, pml, fwd bool) {
	const pages, ncpu, killEpoch = 256, 2, 8
	// The secondary's host booted long after the primary's: its TSC is
	// far lower, so keeping the primary's offset would run the guest's
	// TSC backwards (and the fake vCPU fails on that).
	phost := &fakeHost{base: 1 << 50, t0: time.Now()}
	shost := &fakeHost{base: 1000, t0: time.Now()}
	ps, err := newSide(ncpu, pages, fakeOpts{pml: pml}, phost, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := newSide(ncpu, pages, fakeOpts{pml: pml}, shost, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		caps   = map[uint64]capture{}
		killed = make(chan struct{})
		once   atomic.Bool
		pc, sc = net.Pipe()
		s      *ftmirror.Secondary
	)
	w := &world{}
	w.split = NewSplitter(&w.console, &w.nic, 0, 0)
	w.limit = func() (uint64, bool) {
		e, complete := s.Committed()
		mu.Lock()
		defer mu.Unlock()
		c, ok := caps[e]
		return c.emitted, ok && complete
	}
	cfg := ftmirror.Config{PSK: testPSK, Generation: 1, Epoch: 5 * time.Millisecond, GroupBytes: 2048,
		Heartbeat: ftmirror.Heartbeat{Interval: 10 * time.Millisecond, Misses: 300},
		Forward:   fwd, ExactHooks: true}
	scfg := cfg
	cfg.Hook = func(pt ftmirror.Point, e uint64) {
		if pt == ftmirror.PointPaused {
			// The guest is paused here: memory and state are the epoch's.
			c := capture{mem: append([]byte(nil), ps.v.cfg.Memory...), blobs: ps.v.SaveState(nil),
				emitted: ps.v.Out.Emitted(), quiesced: ps.b.nic.quiesced.Load()}
			mu.Lock()
			caps[e] = c
			mu.Unlock()
		}
		if pt == kill && e >= killEpoch && once.CompareAndSwap(false, true) {
			pc.Close() // the primary dies here
			close(killed)
		}
	}
	ptap := &tap{}
	p := ftmirror.NewPrimary(cfg, ps.v, ps.v, ps.v, worldSink{w, "primary"})
	ps.v.Out.SetEmit(ptap.wrap(p.Output))
	s = ftmirror.NewSecondary(scfg, ss.v)
	if err := ps.v.M.Start(); err != nil {
		t.Fatal(err)
	}
	perr, serr := make(chan error, 1), make(chan error, 1)
	go func() { perr <- p.Serve(pc) }()
	go func() { serr <- s.Serve(sc) }()
	select {
	case <-killed:
	case err := <-perr:
		t.Fatalf("primary ended before the kill: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatalf("kill point %s never reached", kill)
	}
	<-perr
	if err := <-serr; !errors.Is(err, ftmirror.ErrPeerLost) {
		t.Fatalf("secondary: %v", err)
	}
	ps.v.M.Stop(nil)
	if err := ps.v.M.Wait(); err != nil {
		t.Fatalf("primary guest: %v", err)
	}
	time.Sleep(time.Until(s.PromoteAt()))
	tk, err := s.Takeover()
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	mu.Lock()
	c, ok := caps[tk.Epoch]
	mu.Unlock()
	if !ok || tk.Epoch < killEpoch/2 { // END of an epoch may follow the next BEGIN, so a kill in E may commit E-2
		t.Fatalf("took over at epoch %d (captured %v)", tk.Epoch, ok)
	}
	if !c.quiesced {
		t.Error("the NIC was not quiesced during the checkpoint pause")
	}
	if !bytes.Equal(ss.v.cfg.Memory, c.mem) {
		t.Fatalf("secondary memory differs from the primary's at epoch %d", tk.Epoch)
	}
	if !reflect.DeepEqual(tk.Blobs, c.blobs) {
		t.Fatalf("committed state differs from the primary's at epoch %d", tk.Epoch)
	}
	if tk.OutEnd != c.emitted {
		t.Fatalf("committed output ends at %d, the primary had emitted %d at epoch %d", tk.OutEnd, c.emitted, tk.Epoch)
	}

	// The promoted secondary: release the committed output from where
	// the world stands, restore the VM and run it as the new primary.
	w.mu.Lock()
	at := uint64(len(w.raw))
	w.mu.Unlock()
	if at < tk.OutOffset || at > tk.OutEnd {
		t.Fatalf("world at %d outside the secondary's output [%d,%d)", at, tk.OutOffset, tk.OutEnd)
	}
	if err := (worldSink{w, "promoted"}).Release(at, tk.Out[at-tk.OutOffset:]); err != nil {
		t.Fatal(err)
	}
	st, err := DecodeState(tk.Blobs)
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.v.Restore(tk.Blobs); err != nil {
		t.Fatal(err)
	}
	for name, dev := range map[string]interface{ Save() ([]byte, error) }{"uart0": ss.b.uart, "net0": ss.b.nic} {
		b, err := dev.Save()
		if err != nil || !bytes.Equal(b, st.Devices[name]) {
			t.Fatalf("restored %s differs from the committed state (%v)", name, err)
		}
	}
	if g := ss.v.GuestTSC(); g < st.GuestTSC {
		t.Fatalf("restored guest TSC %d is behind the checkpoint's %d", g, st.GuestTSC)
	}
	if st.GuestTSC < phost.base {
		t.Fatalf("checkpoint guest TSC %d below the primary host's base: not the primary's clock", st.GuestTSC)
	}
	stap := &tap{}
	p2 := ftmirror.NewPrimary(scfg, ss.v, ss.v, ss.v, worldSink{w, "promoted"})
	p2.Continue(tk.Epoch, tk.OutEnd, true)
	ss.v.Out.SetEmit(stap.wrap(p2.Output))
	if err := ss.v.M.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	alone := make(chan struct{})
	go func() { p2.RunAlone(stop); close(alone) }()
	time.Sleep(40 * time.Millisecond)
	// Stop the guest first, so everything it emitted is sealed and
	// released by RunAlone's last round.
	ss.v.M.Stop(nil)
	gerr := ss.v.M.Wait()
	close(stop)
	<-alone
	if gerr != nil {
		t.Fatalf("promoted guest: %v", gerr)
	}
	for i, cpu := range ss.cpus {
		if !cpu.restored || cpu.first < st.GuestTSC {
			t.Fatalf("vcpu %d: restored %v, first TSC read %d, checkpoint %d", i, cpu.restored, cpu.first, st.GuestTSC)
		}
	}

	// Exactly once, in order: the world saw the primary's stream up to
	// the committed end, then the promoted guest's.
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		t.Fatalf("world: %v", w.errs)
	}
	want := append(ptap.bytes()[:tk.OutEnd], stap.bytes()...)
	if !bytes.Equal(w.raw, want) {
		t.Fatalf("world saw %d bytes, want %d", len(w.raw), len(want))
	}
	if len(stap.bytes()) == 0 || w.nic.frames == nil || w.console.Len() == 0 {
		t.Fatalf("too little output: promoted %d bytes, %d frames, %d console bytes", len(stap.bytes()), len(w.nic.frames), w.console.Len())
	}
	if w.split.p.Pending() != 0 {
		t.Fatalf("%d bytes of a partial record left", w.split.p.Pending())
	}
}
