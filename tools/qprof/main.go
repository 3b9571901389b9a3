// Command qprof is a sampling profiler for a doppel kernel running under
// QEMU. doppel has no profiling timer of its own, and under TCG the
// emulated CPU's time is what matters, so qprof samples from outside: it
// talks to QEMU's human monitor on a Unix socket, stops the machine, reads
// every CPU's RIP and RBP, walks the Go frame-pointer chain through guest
// memory, lets the machine go on, and at the end prints flat and
// cumulative profiles symbolized from the kernel's ELF.
//
// Stopping the machine is what makes the sample exact: a running TCG vCPU
// writes its RIP back only when it leaves a chain of translated blocks,
// while a stopped one has left at a block boundary with its state synced.
//
// Usage (the tests add the monitor socket when DOPPEL_QEMU_MONITOR names
// a directory):
//
//	qprof -mon /tmp/mon/TestX-secondary.sock -elf build/kernel.elf -for 20s
package main

import (
	"bufio"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	mon := flag.String("mon", "", "QEMU human monitor Unix socket (-monitor unix:PATH,server=on,wait=off)")
	elfPath := flag.String("elf", "build/kernel.elf,build/doppel.elf", "ELF files for symbols, comma-separated (the Go kernel and the boot layer)")
	dur := flag.Duration("for", 20*time.Second, "how long to sample")
	every := flag.Duration("every", 10*time.Millisecond, "pause between samples")
	depth := flag.Int("depth", 24, "frames to walk per sample (0: RIP only)")
	top := flag.Int("top", 30, "rows per table")
	focus := flag.String("focus", "", "also print the whole stacks of samples with a frame matching this regexp")
	wait := flag.Duration("wait", 0, "wait this long for the socket to appear")
	flag.Parse()
	if *mon == "" {
		log.Fatal("qprof: -mon is required")
	}
	syms := &symbols{}
	for _, path := range strings.Split(*elfPath, ",") {
		if err := syms.load(path); err != nil {
			log.Fatalf("qprof: %v", err)
		}
	}
	var focusRE *regexp.Regexp
	if *focus != "" {
		focusRE = regexp.MustCompile(*focus)
	}
	c, err := dialMonitor(*mon, *wait)
	if err != nil {
		log.Fatalf("qprof: %v", err)
	}
	defer c.Close()

	p := newProfile(focusRE)
	deadline := time.Now().Add(*dur)
	for time.Now().Before(deadline) {
		s, err := c.sample(*depth)
		if err != nil {
			log.Printf("qprof: sample: %v (stopping)", err)
			break
		}
		p.add(s, syms)
		time.Sleep(*every)
	}
	p.print(os.Stdout, *top)
}

// symbols maps addresses to function names.
type symbols struct {
	addrs []uint64
	names []string
}

// load adds the text symbols of the ELF file at path.
func (s *symbols) load(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("open ELF: %w", err)
	}
	defer f.Close()
	list, err := f.Symbols()
	if err != nil {
		return fmt.Errorf("read symbols of %s: %w", path, err)
	}
	n := 0
	for _, y := range list {
		// The boot layer's assembly labels are NOTYPE; local labels
		// inside functions would split them, so take global ones too.
		t := elf.ST_TYPE(y.Info)
		text := y.Section < elf.SHN_LORESERVE && int(y.Section) < len(f.Sections) &&
			f.Sections[y.Section].Flags&elf.SHF_EXECINSTR != 0
		if y.Value == 0 || !text || (t != elf.STT_FUNC && !(t == elf.STT_NOTYPE && elf.ST_BIND(y.Info) == elf.STB_GLOBAL)) {
			continue
		}
		s.addrs = append(s.addrs, y.Value)
		s.names = append(s.names, y.Name)
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s has no function symbols", path)
	}
	idx := make([]int, len(s.addrs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool { return s.addrs[idx[i]] < s.addrs[idx[j]] })
	addrs, names := make([]uint64, len(idx)), make([]string, len(idx))
	for i, k := range idx {
		addrs[i], names[i] = s.addrs[k], s.names[k]
	}
	s.addrs, s.names = addrs, names
	return nil
}

func (s *symbols) name(pc uint64) string {
	i := sort.Search(len(s.addrs), func(i int) bool { return s.addrs[i] > pc }) - 1
	if i < 0 {
		return fmt.Sprintf("%#x", pc)
	}
	return s.names[i]
}

// monitor is a session on QEMU's human monitor.
type monitor struct {
	conn net.Conn
	r    *bufio.Reader
}

const prompt = "(qemu) "

func dialMonitor(path string, wait time.Duration) (*monitor, error) {
	end := time.Now().Add(wait)
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			m := &monitor{conn: conn, r: bufio.NewReader(conn)}
			if _, err := m.readToPrompt(); err != nil {
				conn.Close()
				return nil, fmt.Errorf("monitor banner: %w", err)
			}
			return m, nil
		}
		if time.Now().After(end) {
			return nil, fmt.Errorf("dial monitor: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (m *monitor) Close() error { return m.conn.Close() }

// readToPrompt reads until the next prompt and returns what came before.
func (m *monitor) readToPrompt() (string, error) {
	var b strings.Builder
	for {
		c, err := m.r.ReadByte()
		if err != nil {
			return b.String(), err
		}
		b.WriteByte(c)
		if c == ' ' && strings.HasSuffix(b.String(), prompt) {
			return strings.TrimSuffix(b.String(), prompt), nil
		}
	}
}

func (m *monitor) do(cmd string) (string, error) {
	if _, err := io.WriteString(m.conn, cmd+"\n"); err != nil {
		return "", err
	}
	out, err := m.readToPrompt()
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	// The monitor echoes the command line, with terminal escapes.
	if i := strings.Index(out, "\n"); i >= 0 {
		out = out[i+1:]
	}
	return out, nil
}

// cpuSample is one CPU's state at a sample.
type cpuSample struct {
	cpu    int
	halted bool
	stack  []uint64 // RIP, then return addresses
}

var (
	cpuRE = regexp.MustCompile(`CPU#(\d+)`)
	ripRE = regexp.MustCompile(`RIP=([0-9a-f]+)`)
	rbpRE = regexp.MustCompile(`RBP=([0-9a-f]+)`)
	hltRE = regexp.MustCompile(`HLT=(\d)`)
	hexRE = regexp.MustCompile(`: (0x[0-9a-f]+) (0x[0-9a-f]+)`)
)

func (m *monitor) sample(depth int) ([]cpuSample, error) {
	if _, err := m.do("stop"); err != nil {
		return nil, err
	}
	defer m.do("cont")
	regs, err := m.do("info registers -a")
	if err != nil {
		return nil, err
	}
	var out []cpuSample
	for _, block := range strings.Split(regs, "\nCPU#")[0:] {
		if !strings.HasPrefix(block, "CPU#") {
			block = "CPU#" + block
		}
		cm, rm, bm := cpuRE.FindStringSubmatch(block), ripRE.FindStringSubmatch(block), rbpRE.FindStringSubmatch(block)
		if cm == nil || rm == nil || bm == nil {
			continue
		}
		n, _ := strconv.Atoi(cm[1])
		rip, _ := strconv.ParseUint(rm[1], 16, 64)
		rbp, _ := strconv.ParseUint(bm[1], 16, 64)
		h := hltRE.FindStringSubmatch(block)
		s := cpuSample{cpu: n, halted: h != nil && h[1] == "1", stack: []uint64{rip}}
		if depth > 0 && !s.halted {
			if _, err := m.do(fmt.Sprintf("cpu %d", n)); err != nil {
				return nil, err
			}
			for i := 0; i < depth && rbp != 0 && rbp%8 == 0; i++ {
				mem, err := m.do(fmt.Sprintf("x /2gx %#x", rbp))
				if err != nil {
					return nil, err
				}
				hm := hexRE.FindStringSubmatch(mem)
				if hm == nil {
					break
				}
				next, _ := strconv.ParseUint(hm[1][2:], 16, 64)
				ret, _ := strconv.ParseUint(hm[2][2:], 16, 64)
				if ret == 0 {
					break
				}
				s.stack = append(s.stack, ret-1) // inside the call
				if next <= rbp {
					break // frames grow up the stack; anything else ends the walk
				}
				rbp = next
			}
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CPU in %q", regs)
	}
	return out, nil
}

// profile tallies samples per CPU.
type profile struct {
	focus   *regexp.Regexp
	stacks  map[string]int // focused stacks, leaf first
	others  map[string]int // what the other CPUs ran while one was in focus (leaf and two callers)
	samples map[int]int
	halted  map[int]int
	flat    map[int]map[string]int
	cum     map[int]map[string]int
}

func newProfile(focus *regexp.Regexp) *profile {
	return &profile{focus: focus, stacks: map[string]int{}, others: map[string]int{}, samples: map[int]int{}, halted: map[int]int{},
		flat: map[int]map[string]int{}, cum: map[int]map[string]int{}}
}

func (p *profile) add(ss []cpuSample, syms *symbols) {
	if p.focus != nil {
		for i, s := range ss {
			if s.halted || !p.focus.MatchString(syms.name(s.stack[0])) {
				continue
			}
			for j, o := range ss {
				if j == i {
					continue
				}
				k := "halted"
				if !o.halted {
					var names []string
					for d, pc := range o.stack {
						if d == 3 {
							break
						}
						names = append(names, syms.name(pc))
					}
					k = strings.Join(names, " < ")
				}
				p.others[k]++
			}
		}
	}
	for _, s := range ss {
		p.samples[s.cpu]++
		if s.halted {
			p.halted[s.cpu]++
			continue
		}
		if p.flat[s.cpu] == nil {
			p.flat[s.cpu], p.cum[s.cpu] = map[string]int{}, map[string]int{}
		}
		p.flat[s.cpu][syms.name(s.stack[0])]++
		seen := map[string]bool{}
		var names []string
		focused := false
		for _, pc := range s.stack {
			n := syms.name(pc)
			names = append(names, n)
			focused = focused || p.focus != nil && p.focus.MatchString(n)
			if !seen[n] {
				seen[n] = true
				p.cum[s.cpu][n]++
			}
		}
		if focused {
			p.stacks[strings.Join(names, "\n        ")]++
		}
	}
}

func (p *profile) print(w io.Writer, top int) {
	var cpus []int
	for c := range p.samples {
		cpus = append(cpus, c)
	}
	sort.Ints(cpus)
	for _, c := range cpus {
		n := p.samples[c]
		fmt.Fprintf(w, "CPU %d: %d samples, %d halted (%.0f%%)\n", c, n, p.halted[c], pct(p.halted[c], n))
		fmt.Fprintf(w, "  flat:\n")
		for _, r := range ranked(p.flat[c], top) {
			fmt.Fprintf(w, "  %6.1f%% %6d  %s\n", pct(r.n, n), r.n, r.key)
		}
		fmt.Fprintf(w, "  cum:\n")
		for _, r := range ranked(p.cum[c], top) {
			fmt.Fprintf(w, "  %6.1f%% %6d  %s\n", pct(r.n, n), r.n, r.key)
		}
	}
	if p.focus == nil {
		return
	}
	total := 0
	for _, v := range p.stacks {
		total += v
	}
	fmt.Fprintf(w, "stacks matching %q: %d samples\n", p.focus, total)
	for _, r := range ranked(p.stacks, top) {
		fmt.Fprintf(w, "%6d  %s\n", r.n, r.key)
	}
	fmt.Fprintf(w, "other CPUs while a CPU's leaf matched %q:\n", p.focus)
	for _, r := range ranked(p.others, top) {
		fmt.Fprintf(w, "%6d  %s\n", r.n, r.key)
	}
}

type row struct {
	key string
	n   int
}

// ranked returns the top entries of m, most first.
func ranked(m map[string]int, top int) []row {
	var rows []row
	for k, v := range m {
		rows = append(rows, row{k, v})
	}
	sort.Slice(rows, func(i, j int) bool {
		return rows[i].n > rows[j].n || rows[i].n == rows[j].n && rows[i].key < rows[j].key
	})
	return rows[:min(top, len(rows))]
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
