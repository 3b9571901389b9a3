package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/board"
	"github.com/doppel-ft/doppel/console"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/dirtytest"
	"github.com/doppel-ft/doppel/vmm/loader"
	"github.com/doppel-ft/doppel/vmm/pc"
)

// Boot flags of a full guest (the module doppel.guest names is a Linux
// bzImage or a multiboot kernel; its command line is the rest of the
// module's string after its name). doppel.guest.mem sizes its RAM.
const (
	FlagGuestCPUs        = "doppel.guest.cpus"
	FlagGuestInitrd      = "doppel.guest.initrd"
	FlagGuestRestoreTest = "doppel.guest.restoretest"
	FlagGuestACPI        = "doppel.guest.acpi"
)

func init() {
	for _, f := range []board.Flag{
		{Name: FlagGuestCPUs, Kind: board.KindInt, Default: "1", Min: 1, Max: 32,
			Help: "vCPUs of the guest, each on its own host CPU"},
		{Name: FlagGuestInitrd, Kind: board.KindString, Default: "",
			Help: "multiboot module given to the guest as its initrd"},
		{Name: FlagGuestRestoreTest, Kind: board.KindInt, Default: "0", Min: 0, Max: 10000,
			Help: "pause, save, destroy and restore the running guest this many times"},
		{Name: FlagGuestACPI, Kind: board.KindBool, Default: "1",
			Help: "give the guest ACPI tables (0: one CPU, PIC and PIT, LAPIC in virtual-wire mode)"},
	} {
		if err := board.Known.Register(f); err != nil {
			panic(err) // a bad built-in flag is a programming error
		}
	}
}

// The console key sequence: Ctrl-A then c switches the console between
// the guest's COM1 and doppel's shell; Ctrl-A Ctrl-A sends one Ctrl-A.
const (
	consoleEscape = 0x01
	consoleSwitch = 'c'
)

// consoleMux owns the console input: it goes to the running guest's COM1
// or to doppel's shell, and Ctrl-A c switches between them.
type consoleMux struct {
	src   io.Reader
	out   io.Writer
	once  sync.Once
	shell chan []byte
	buf   []byte

	mu      sync.Mutex
	guest   *pc.Input // non-nil while a guest runs
	toGuest bool
	escaped bool
}

// guestConsole is the console of the running kernel (run sets it).
var guestConsole = newConsoleMux(strings.NewReader(""), io.Discard)

// newConsoleMux reads src (lazily, from the first Read or guest start)
// and writes its notices to out.
func newConsoleMux(src io.Reader, out io.Writer) *consoleMux {
	return &consoleMux{src: src, out: out, shell: make(chan []byte, 16)}
}

func (c *consoleMux) start() {
	c.once.Do(func() { go c.pump() })
}

// pump reads the console for good and routes every byte.
func (c *consoleMux) pump() {
	buf := make([]byte, 256)
	for {
		n, err := c.src.Read(buf)
		if n > 0 {
			c.route(buf[:n])
		}
		if err != nil {
			close(c.shell)
			return
		}
	}
}

func (c *consoleMux) route(b []byte) {
	c.mu.Lock()
	var toShell, toGuest []byte
	for _, x := range b {
		if c.escaped {
			c.escaped = false
			if x == consoleSwitch {
				c.switchLocked()
				continue
			}
			if x != consoleEscape {
				continue // an unknown sequence is dropped
			}
		} else if x == consoleEscape {
			c.escaped = true
			continue
		}
		if c.toGuest && c.guest != nil {
			toGuest = append(toGuest, x)
		} else {
			toShell = append(toShell, x)
		}
	}
	g := c.guest
	c.mu.Unlock()
	if len(toGuest) > 0 {
		g.Send(toGuest)
	}
	if len(toShell) > 0 {
		c.shell <- toShell
	}
}

func (c *consoleMux) switchLocked() {
	if c.guest == nil {
		fmt.Fprintf(c.out, "\r\n[doppel: no guest is running]\r\n")
		return
	}
	c.toGuest = !c.toGuest
	if c.toGuest {
		fmt.Fprintf(c.out, "\r\n[doppel: console to the guest; Ctrl-A c for doppel's shell]\r\n")
	} else {
		fmt.Fprintf(c.out, "\r\n[doppel: console to doppel's shell; Ctrl-A c for the guest]\r\n")
	}
}

// setGuest gives the console to a starting guest (in != nil) or back to
// the shell.
func (c *consoleMux) setGuest(in *pc.Input) {
	c.mu.Lock()
	c.guest, c.toGuest = in, in != nil
	c.mu.Unlock()
	c.start()
}

// Read implements io.Reader for the shell.
func (c *consoleMux) Read(p []byte) (int, error) {
	c.start()
	if len(c.buf) == 0 {
		b, ok := <-c.shell
		if !ok {
			return 0, io.EOF
		}
		c.buf = b
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// startPCGuest runs the module as a full guest when it is a kernel the
// loader knows (bzImage, multiboot); it returns false for anything else
// (the flat EPT test guest). The guest runs in the background with the
// console; when it stops doppel reports why and the console returns to
// doppel's shell.
func (k *kernel) startPCGuest(m board.Module) bool {
	img, err := readModule(m)
	if err != nil {
		k.log.Printf("guest", "%v", err)
		return true
	}
	kind, err := loader.Detect(img)
	if err != nil {
		return false
	}
	o := pc.Options{
		Kernel:      img,
		Cmdline:     moduleArgs(m.Name),
		CPUs:        int(k.flags.Int(FlagGuestCPUs)),
		MemSize:     k.flags.Size(dirtytest.FlagGuestMem),
		Console:     newLineWriter(k.out, 50*time.Millisecond),
		Log:         k.log.Writer("guest"),
		RestoreTest: int(k.flags.Int(FlagGuestRestoreTest)),
		Seed:        uint64(time.Now().UnixNano()),
		Input:       &pc.Input{},
		NoACPI:      !k.flags.Bool(FlagGuestACPI),
		DMA:         k.flags.Size(board.FlagDMA),
		SVMCPU0:     k.flags.String(board.FlagSVMCPU0),
	}
	if name := k.flags.String(FlagGuestInitrd); name != "" {
		mods, _ := board.ReadModules()
		im, ok := board.FindModule(mods, name)
		if !ok {
			k.log.Printf("guest", "doppel.guest.initrd=%s: no such module; the guest is not started", name)
			return true
		}
		if o.Initrd, err = readModule(im); err != nil {
			k.log.Printf("guest", "%v", err)
			return true
		}
	}
	if o.Net, err = newGuestBridge(k); err != nil {
		k.log.Printf("guest", "%v; the guest is not started", err)
		return true
	}
	k.log.Printf("guest", "starting %v %q with %d vCPUs, %s, command line %q (Ctrl-A c switches the console)",
		kind, firstWord(m.Name), o.CPUs, board.FormatBytes(o.MemSize), o.Cmdline)
	reqs := make(chan pc.RestoreRequest)
	o.Requests = reqs
	o.Status = &pc.Status{}
	guestStatus.Store(o.Status)
	guestRestore.Store(&reqs)
	guestConsole.setGuest(o.Input)
	go func() {
		rep, err := pc.Run(o)
		if o.Net != nil {
			s := o.Net.Stats()
			k.log.Printf("guest", "guest NIC: %d frames out, %d dropped (queue full), %d refused by the NIC; %d frames in, %d not for the guest, %d refused by the guest",
				s.TxFrames, s.TxDroppedFull, s.TxErrors, s.RxFrames, s.RxNotForGuest, s.RxRefused+s.RxNoGuest)
			o.Net.Close()
		}
		guestRestore.Store(nil)
		guestConsole.setGuest(nil)
		k.reportGuest(rep, err)
	}()
	return true
}

// guestRestore is the running guest's restore-request channel, nil when
// no guest runs.
var guestRestore atomic.Pointer[chan pc.RestoreRequest]

// guestStatus follows the running guest for the guest command.
var guestStatus atomic.Pointer[pc.Status]

// guestCommand reports the running guest's VM exits so far.
var guestCommand = console.Command{
	Name: "guest",
	Help: "VM exits by reason, injected interrupts and halts of the running guest so far",
	Run: func(w io.Writer, _ []string) error {
		st := guestStatus.Load()
		if st == nil {
			return fmt.Errorf("guest: no guest is running")
		}
		r, ok := st.Live()
		if !ok {
			return fmt.Errorf("guest: no guest is running")
		}
		fmt.Fprintf(w, "guest: %s\n", r.ExitSummary())
		for i := range r.Exits {
			fmt.Fprintf(w, "guest: vcpu %d: injected %d interrupts, %d halts, %d MSR faults, %d MMIO accesses\n",
				i, r.Injected[i], r.Halts[i], r.MSRFaults[i], r.MMIO[i])
		}
		for i := range r.Times {
			fmt.Fprintf(w, "guest: vcpu %d time: %s\n", i, r.TimeSummary(i))
		}
		for i, e := range r.LastExits {
			fmt.Fprintf(w, "guest: vcpu %d last exit: %s\n", i, e)
		}
		return nil
	},
}

// restoreCommand runs save/destroy/restore cycles on the running guest
// from doppel's shell (Ctrl-A c to get there while a guest runs).
var restoreCommand = console.Command{
	Name: "restore",
	Args: "[n]",
	Help: "pause the running guest n times (default 5) at random moments, save it, rebuild it in fresh memory, resume",
	Run: func(w io.Writer, args []string) error {
		n := 5
		if len(args) > 0 {
			v, err := strconv.Atoi(args[0])
			if err != nil || v < 1 || v > 1000 {
				return fmt.Errorf("restore: want a count from 1 to 1000, not %q", args[0])
			}
			n = v
		}
		ch := guestRestore.Load()
		if ch == nil {
			return fmt.Errorf("restore: no guest is running")
		}
		done := make(chan pc.RestoreResult, 1)
		select {
		case *ch <- pc.RestoreRequest{N: n, Done: done}:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("restore: the guest does not take requests")
		}
		res := <-done
		for i, c := range res.Cycles {
			fmt.Fprintf(w, "restore: cycle %d/%d: %d bytes, save %v, restore %v, %d pages written since the last cycle\n",
				i+1, n, c.Bytes, c.Save, c.Restore, c.Dirty)
		}
		if res.Err != nil {
			return fmt.Errorf("restore: after %d cycles: %w", len(res.Cycles), res.Err)
		}
		fmt.Fprintf(w, "restore: %d/%d cycles done\n", len(res.Cycles), n)
		return nil
	},
}

// reportGuest logs how the guest ended.
func (k *kernel) reportGuest(rep *pc.Report, err error) {
	switch {
	case errors.Is(err, pc.ErrNoVT):
		k.log.Printf("vmm", "%v; the console stays up", err)
		return
	case err != nil:
		k.log.Printf("guest", "guest failed: %v", err)
		return
	}
	why := rep.Reason
	if rep.Err != nil {
		why = rep.Err.Error()
		switch {
		case errors.Is(rep.Err, vmm.ErrAllHalted):
			why = "every vCPU halted with interrupts off (powered off): " + why
		case errors.Is(rep.Err, vmm.ErrGuestHalted):
			why = "halted with interrupts off (powered off): " + why
		}
	}
	k.log.Printf("guest", "guest stopped after %v: %s", rep.Runtime.Round(time.Millisecond), why)
	k.log.Printf("guest", "%s", rep.ExitSummary())
	k.log.Printf("guest", "%v", rep.Dirty)
	for i := range rep.Exits {
		k.log.Printf("guest", "vcpu %d: injected %d interrupts, %d halts, %d MSR faults, %d MMIO accesses",
			i, rep.Injected[i], rep.Halts[i], rep.MSRFaults[i], rep.MMIO[i])
	}
	for i, c := range rep.Restores {
		k.log.Printf("guest", "restore %d: %d bytes, save %v, restore %v", i+1, c.Bytes, c.Save, c.Restore)
	}
	k.log.Printf("guest", "console back to doppel's shell; type help")
}

// lineWriter passes the guest's console output on in whole lines, so
// doppel's own log lines never split one; a partial line (a prompt) goes
// out after it has waited for delay.
type lineWriter struct {
	mu    sync.Mutex
	out   io.Writer
	buf   []byte
	delay time.Duration
	timer *time.Timer
}

func newLineWriter(out io.Writer, delay time.Duration) *lineWriter {
	return &lineWriter{out: out, delay: delay}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if i := strings.LastIndexByte(string(w.buf), '\n'); i >= 0 {
		w.out.Write(w.buf[:i+1])
		w.buf = append(w.buf[:0], w.buf[i+1:]...)
	}
	if len(w.buf) > 0 && w.timer == nil {
		w.timer = time.AfterFunc(w.delay, w.flush)
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = nil
	if len(w.buf) > 0 {
		w.out.Write(w.buf)
		w.buf = w.buf[:0]
	}
}

// readModule copies a multiboot module out of host memory.
func readModule(m board.Module) ([]byte, error) {
	start := m.Start &^ 0xFFF
	b, err := vmm.MapPhys(start, (m.End-start+0xFFF)&^0xFFF)
	if err != nil {
		return nil, fmt.Errorf("module %q: %w", m.Name, err)
	}
	return append([]byte(nil), b[m.Start-start:m.End-start]...), nil
}

// moduleArgs is a module's string after its first word: the guest's
// command line.
func moduleArgs(name string) string {
	name = strings.TrimSpace(name)
	if i := strings.IndexAny(name, " \t"); i >= 0 {
		return strings.TrimSpace(name[i+1:])
	}
	return ""
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}
