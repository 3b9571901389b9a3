package main

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cpuSampler records, every 50 ms, how busy the machine is and how much of
// that is this run's processes, so that a report can say how much CPU
// other tenants of the machine took during the sync.
type cpuSampler struct {
	mu      sync.Mutex
	samples []cpuSample
	pids    func() []int
}

type cpuSample struct {
	at          time.Time
	total, ours float64 // cumulative busy jiffies
	wait        float64 // the children's threads' cumulative run-queue wait, ns
}

func (c *cpuSampler) run(stop <-chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		s := cpuSample{at: time.Now(), total: machineBusy()}
		pids := c.pids()
		for _, p := range append(pids, os.Getpid()) {
			s.ours += procBusy(p)
		}
		for _, p := range pids {
			s.wait += runqWait(p)
		}
		c.mu.Lock()
		c.samples = append(c.samples, s)
		c.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// span returns the first and last samples within [from, to] (false if
// there are not two distinct ones). c.mu must be held.
func (c *cpuSampler) span(from, to time.Time) (a, b *cpuSample, ok bool) {
	for i := range c.samples {
		s := &c.samples[i]
		if a == nil && !s.at.Before(from) {
			a = s
		}
		if !s.at.After(to) {
			b = s
		}
	}
	return a, b, a != nil && b != nil && b.at.After(a.at)
}

// others returns the average number of cores used by other processes
// between from and to (-1 if unknown).
func (c *cpuSampler) others(from, to time.Time) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, b, ok := c.span(from, to)
	if !ok {
		return -1
	}
	const hz = 100 // USER_HZ
	return ((b.total - a.total) - (b.ours - a.ours)) / hz / b.at.Sub(a.at).Seconds()
}

// waiting returns how many of the children's threads were, on average,
// runnable but waiting for a CPU between from and to (-1 if unknown): the
// scheduling delay a loaded machine adds to every step of the pipeline.
func (c *cpuSampler) waiting(from, to time.Time) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, b, ok := c.span(from, to)
	if !ok {
		return -1
	}
	return (b.wait - a.wait) / float64(b.at.Sub(a.at).Nanoseconds())
}

// runqWait sums the run-queue wait of every thread of pid
// (/proc/<pid>/task/*/schedstat: run time, wait time, timeslices).
func runqWait(pid int) float64 {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var sum float64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			w, _ := strconv.ParseFloat(f[1], 64)
			sum += w
		}
	}
	return sum
}

func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 {
			continue // idle, iowait, guest (already in user)
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy
}

func procBusy(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s) // from field 3 (state) on
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64) // utime (field 14)
	k, _ := strconv.ParseFloat(f[12], 64) // stime (field 15)
	return u + k
}
