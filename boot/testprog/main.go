// Command testprog exercises the boot layer before the real kernel exists:
// printing, goroutines, sleeping, the GC, async preemption, a recovered nil
// dereference, the layer's /proc files, the console and exit.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	for _, a := range os.Args {
		if a == "testprog.panic" {
			panic("testprog: asked to panic")
		}
	}
	fmt.Println("testprog: hello from Go", runtime.Version(), "GOMAXPROCS", runtime.GOMAXPROCS(0), "NumCPU", runtime.NumCPU())
	fmt.Println("testprog: args", os.Args)
	fmt.Println("testprog: env", os.Environ())
	pingPong()
	sleep()
	nilDeref()
	preempt()
	gc()
	files()
	lapicIDs()
	irqTest()
	measure()
	stdin()
	fmt.Println("testprog: all done")
	os.Exit(0)
}

func pingPong() {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	start := time.Now()
	v := 0
	for i := 0; i < 10000; i++ {
		ping <- v
		v = <-pong
	}
	close(ping)
	fmt.Println("testprog: ping-pong", v, "round trips in", time.Since(start))
}

func sleep() {
	start := time.Now()
	time.Sleep(50 * time.Millisecond)
	d := time.Since(start)
	fmt.Println("testprog: slept", d, "ok:", d >= 50*time.Millisecond && d < 500*time.Millisecond)
	fmt.Println("testprog: wall clock", time.Now().UTC().Format(time.RFC3339))
}

type node struct{ next *node }

func nilDeref() {
	defer func() {
		r := recover()
		fmt.Println("testprog: recovered:", r)
	}()
	var p *node
	fmt.Println(p.next)
}

var spinSink int

func preempt() {
	stop := make(chan struct{})
	go func() { // spins with no function calls: needs async preemption
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := 0; i < 1e7; i++ { // no calls, no preemption points
				spinSink++
			}
		}
	}()
	start := time.Now()
	n := 0
	for time.Since(start) < 200*time.Millisecond {
		n++
		runtime.Gosched()
	}
	runtime.GC() // stop-the-world must preempt the spinner
	close(stop)
	fmt.Println("testprog: worker ran", n, "times beside a spinner; GC done in", time.Since(start))
}

func gc() {
	var total int
	start := time.Now()
	churn := 2560 // MiB: more than the RAM the tests give the machine
	if v, err := strconv.Atoi(os.Getenv("TESTPROG_CHURN_MIB")); err == nil {
		churn = v
	}
	for i := 0; i < churn/64; i++ {
		b := make([]byte, 64<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(j)
		}
		total += len(b)
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("testprog: allocated %d MiB in %v; heap sys %d MiB, released %d MiB, GCs %d\n",
		total>>20, time.Since(start), ms.HeapSys>>20, ms.HeapReleased>>20, ms.NumGC)
}

func files() {
	for _, f := range []string{"/proc/doppel/memmap", "/proc/doppel/modules", "/proc/meminfo", "/proc/doppel/cpus", "/proc/cmdline", "/proc/doppel/stats"} {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Println("testprog:", f, err)
			continue
		}
		fmt.Printf("testprog: %s:\n%s", f, indent(string(b)))
	}
	_, err := os.ReadFile("/proc/nonexistent")
	fmt.Println("testprog: missing file:", err)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

func stdin() {
	fmt.Println("testprog: type a line")
	buf := make([]byte, 64)
	var line []byte
	for !strings.Contains(string(line), "\n") && !strings.Contains(string(line), "\r") {
		n, err := os.Stdin.Read(buf)
		if err != nil {
			fmt.Println("testprog: stdin:", err)
			return
		}
		line = append(line, buf[:n]...)
	}
	fmt.Printf("testprog: read %q\n", strings.TrimSpace(string(line)))
}
