// Command workload is the guest program of the checkpoint/restore test:
// it fills memory with a seeded pattern, prints a checksum over it, then
// prints numbered counter lines, each with the running checksum of the
// memory it rewrites between lines, so that a resumed guest's output shows
// whether it continued correctly: counters without gaps, checksums that
// match a recomputation (-verify).
//
//	workload [-mib 16] [-lines 0 (forever)] [-interval 100ms] [-seed 1]
//	         [-serve port [-stream-interval 10ms] [-quiet]]
//
// Each line is "workload: n=<counter> sum=<hex>"; the first is
// "workload: filled <mib> MiB sum=<hex>" and the last, when -lines ends
// the run, "workload: done n=<lines>".
//
// With -serve it also listens on TCP port and sends every connection a
// numbered stream: "1\n", "2\n", ... one line per -stream-interval (0: as
// fast as TCP takes them), so a client sees at once whether a number is
// missing or repeated (across a failover, say); port+1 serves the same
// stream as fast as TCP takes it (rate measurements). -quiet leaves out the
// memory work and the console lines, keeping only the server.
//
// With -ymm a goroutine holds values in YMM0-YMM15 across a busy loop,
// round after round while the lines are printed, and checks them after
// each round: the guest's AVX state must survive interrupts, context
// switches, VM exits and save/restore. Before the last line it prints
// "workload: ymm rounds=<r> bad=<b>" (and a line for every bad round).
//
// With -spin it does nothing but checksum -mib MiB again and again and
// prints "workload: spin <n> MiB/s" every -interval by the guest's clock:
// the guest's own measure of the CPU it gets (protection on against off).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"strconv"
	"time"
)

func main() {
	mib := flag.Int("mib", 16, "memory to fill, MiB")
	lines := flag.Int("lines", 0, "counter lines to print, 0 for ever")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between lines")
	seed := flag.Uint64("seed", 1, "pattern seed")
	serve := flag.Int("serve", 0, "TCP port of the numbered stream (port+1: unpaced), 0 for none")
	streamInterval := flag.Duration("stream-interval", 10*time.Millisecond, "time between stream lines, 0 for none")
	quiet := flag.Bool("quiet", false, "only the server: no memory work, no console lines")
	spin := flag.Bool("spin", false, "checksum -mib MiB in a loop, print the rate every -interval")
	ymm := flag.Bool("ymm", false, "check that YMM registers keep their values while the lines run")
	flag.Parse()
	if *serve != 0 {
		paced, err := net.Listen("tcp", fmt.Sprintf(":%d", *serve))
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload: %v\n", err)
			os.Exit(1)
		}
		fast, err := net.Listen("tcp", fmt.Sprintf(":%d", *serve+1))
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("workload: serving the numbered stream on port %d (and unpaced on %d)\n", *serve, *serve+1)
		go serveStream(fast, 0)
		if *quiet {
			serveStream(paced, *streamInterval)
			return
		}
		go serveStream(paced, *streamInterval)
	}
	if *mib <= 0 || *mib > 4096 {
		fmt.Fprintln(os.Stderr, "workload: -mib must be 1..4096")
		os.Exit(2)
	}
	mem := make([]byte, *mib<<20)
	fill(mem, *seed)
	if *spin {
		spinRate(mem, *interval)
	}
	fmt.Printf("workload: filled %d MiB sum=%08x\n", *mib, crc32.ChecksumIEEE(mem))
	var ymmStop chan struct{}
	var ymmDone chan string
	if *ymm {
		ymmStop, ymmDone = make(chan struct{}), make(chan string, 1)
		go ymmCheck(ymmStop, ymmDone)
	}
	for n := 1; *lines == 0 || n <= *lines; n++ {
		step(mem, n)
		fmt.Printf("workload: n=%d sum=%08x\n", n, crc32.ChecksumIEEE(mem))
		time.Sleep(*interval)
	}
	if *ymm {
		close(ymmStop)
		fmt.Println(<-ymmDone)
	}
	fmt.Printf("workload: done n=%d\n", *lines)
}

// spinRate checksums mem for ever, printing MiB per second of the guest's
// clock every interval.
func spinRate(mem []byte, interval time.Duration) {
	start, bytes := time.Now(), 0
	var sum uint32
	for {
		sum = crc32.Update(sum, crc32.IEEETable, mem)
		bytes += len(mem)
		if d := time.Since(start); d >= interval {
			fmt.Printf("workload: spin %.1f MiB/s (sum %08x)\n", float64(bytes)/(1<<20)/d.Seconds(), sum)
			start, bytes = time.Now(), 0
		}
	}
}

// fill writes a xorshift64 stream from seed.
func fill(mem []byte, seed uint64) {
	x := seed | 1
	for i := 0; i+8 <= len(mem); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for b := 0; b < 8; b++ {
			mem[i+b] = byte(x >> (8 * b))
		}
	}
}

// step rewrites one word in each 4 KiB page with the counter, so every
// line dirties every page and its checksum depends on all earlier steps.
func step(mem []byte, n int) {
	for p := 0; p+8 <= len(mem); p += 4096 {
		off := p + (n*8)%4096
		mem[off] ^= byte(n)
		mem[off+1] ^= byte(n >> 8)
	}
}

// serveStream sends each connection its numbered stream until it closes.
func serveStream(l net.Listener, interval time.Duration) {
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "workload: accept: %v\n", err)
			return
		}
		go stream(c, interval)
	}
}

func stream(c net.Conn, interval time.Duration) {
	defer c.Close()
	w := bufio.NewWriter(c)
	var line []byte
	for n := uint64(1); ; n++ {
		line = strconv.AppendUint(line[:0], n, 10)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return
		}
		if interval > 0 {
			if err := w.Flush(); err != nil {
				return
			}
			time.Sleep(interval)
		}
	}
}
