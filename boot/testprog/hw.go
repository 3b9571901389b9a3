package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

func outb(port uint16, v uint8)
func rdtsc() uint64

// pin moves the calling (locked) thread to cpu.
func pin(cpu int) error {
	mask := uint64(1) << cpu
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, 8, uintptr(unsafe.Pointer(&mask)))
	if e != 0 {
		return e
	}
	return nil
}

// lapicIDs maps the local APIC through /dev/mem on each CPU in turn and
// reads its ID register (SDM 3A 10.4.6): proves pinning and /dev/mem.
func lapicIDs() {
	f, err := os.OpenFile("/dev/mem", os.O_RDWR, 0)
	if err != nil {
		fmt.Println("testprog: /dev/mem:", err)
		return
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0xFEE00000, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fmt.Println("testprog: mmap /dev/mem:", err)
		return
	}
	defer syscall.Munmap(m)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for cpu := 0; cpu < runtime.NumCPU(); cpu++ {
		if err := pin(cpu); err != nil {
			fmt.Println("testprog: pin:", err)
			return
		}
		id := binary.LittleEndian.Uint32(m[0x20:]) >> 24
		fmt.Printf("testprog: pinned to cpu %d: local APIC id %d\n", cpu, id)
	}
	pin(0)
	syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, 8, uintptr(unsafe.Pointer(&[1]uint64{^uint64(0) >> 1})))
}

// irqTest runs PIT channel 0 at 1 kHz (8254: mode 2 rate generator) and
// reads /dev/irq/0 a few times.
func irqTest() {
	f, err := os.Open("/dev/irq/0")
	if err != nil {
		fmt.Println("testprog: /dev/irq/0:", err)
		return
	}
	defer f.Close()
	const div = 1193182 / 1000
	outb(0x43, 0x34)
	outb(0x40, div&0xff)
	outb(0x40, div>>8)
	var b [8]byte
	var counts []uint64
	for i := 0; i < 3; i++ {
		if _, err := f.Read(b[:]); err != nil {
			fmt.Println("testprog: read /dev/irq/0:", err)
			break
		}
		counts = append(counts, binary.LittleEndian.Uint64(b[:]))
		time.Sleep(5 * time.Millisecond)
	}
	outb(0x43, 0x30) // mode 0, no count: the timer stops
	fmt.Println("testprog: /dev/irq/0 counts", counts)
}

// measure: cycles per clock_gettime and per getpid (locked path), and the
// futex wake round trip between two threads.
func measure() {
	var ts syscall.Timespec
	const n = 20000
	t0 := rdtsc()
	for i := 0; i < n; i++ {
		syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	}
	t1 := rdtsc()
	for i := 0; i < n; i++ {
		syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
	}
	t2 := rdtsc()
	fmt.Printf("testprog: clock_gettime %d cycles, getpid %d cycles (TSC)\n", (t1-t0)/n, (t2-t1)/n)
	if m, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_NONE, syscall.MAP_ANON|syscall.MAP_PRIVATE); err == nil {
		_, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&m[0])), 0)
		_, _, e2 := syscall.Syscall(318 /* getrandom */, uintptr(unsafe.Pointer(&m[0])), 16, 0)
		fmt.Println("testprog: syscalls into PROT_NONE memory:", e, "/", e2)
		syscall.Munmap(m)
	}
	for _, cpus := range [][2]int{{0, 0}, {0, 1}} {
		if cpus[1] >= runtime.NumCPU() {
			continue
		}
		s0, _ := os.ReadFile("/proc/doppel/stats")
		c, d := futexPingPong(cpus, 2000)
		s1, _ := os.ReadFile("/proc/doppel/stats")
		fmt.Printf("testprog: stats before:\n%safter:\n%s", s0, s1)
		fmt.Printf("testprog: futex round trip cpu%d<->cpu%d: %d cycles, %v\n", cpus[0], cpus[1], c, d)
	}
}

const futexWait, futexWake = 0 | 128, 1 | 128 // FUTEX_PRIVATE_FLAG

func futex(addr *uint32, op, val uint32) {
	syscall.RawSyscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), uintptr(op), uintptr(val), 0, 0, 0)
}

// futexPingPong: A sets word=1 and wakes B; B sets it back to 0 and wakes
// A; each side waits in FUTEX_WAIT. Returns cycles and time per round trip.
func futexPingPong(cpus [2]int, n int) (uint64, time.Duration) {
	var word uint32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		pin(cpus[1])
		for i := 0; i < n; i++ {
			for atomic.LoadUint32(&word) == 0 {
				futex(&word, futexWait, 0)
			}
			atomic.StoreUint32(&word, 0)
			futex(&word, futexWake, 1)
		}
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pin(cpus[0])
	start, c0 := time.Now(), rdtsc()
	for i := 0; i < n; i++ {
		atomic.StoreUint32(&word, 1)
		futex(&word, futexWake, 1)
		for atomic.LoadUint32(&word) == 1 {
			futex(&word, futexWait, 1)
		}
	}
	c, d := (rdtsc()-c0)/uint64(n), time.Since(start)/time.Duration(n)
	wg.Wait()
	return c, d
}
