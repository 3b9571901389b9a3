package main

import (
	"bufio"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeMonitor answers the commands qprof sends like QEMU's human monitor:
// it echoes each command line, prints the reply and a new prompt.
func fakeMonitor(t *testing.T, reply func(cmd string) string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mon.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("QEMU 7.2.22 monitor - type 'help' for more information\r\n" + prompt))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.TrimSpace(line)
			c.Write([]byte(cmd + "\r\n" + reply(cmd) + prompt))
		}
	}()
	return path
}

func TestSample(t *testing.T) {
	regs := "CPU#0\r\nRAX=0000000000000000 RBX=0000000000000001\r\nRSI=0 RDI=0 RBP=0000000000002000 RSP=0000000000001ff0\r\n" +
		"RIP=0000000000401010 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n" +
		"CPU#1\r\nRAX=0 RBX=0 RBP=0000000000003000 RSP=0\r\nRIP=0000000000100200 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n"
	var cmds []string
	path := fakeMonitor(t, func(cmd string) string {
		cmds = append(cmds, cmd)
		switch cmd {
		case "info registers -a":
			return regs
		case "x /2gx 0x2000": // saved RBP, return address
			return "0000000000002000: 0x0000000000002100 0x0000000000402005\r\n"
		case "x /2gx 0x2100": // the outermost frame
			return "0000000000002100: 0x0000000000000000 0x0000000000403001\r\n"
		}
		return ""
	})
	m, err := dialMonitor(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, err := m.sample(8)
	if err != nil {
		t.Fatal(err)
	}
	want := []cpuSample{
		{cpu: 0, stack: []uint64{0x401010, 0x402004, 0x403000}},
		{cpu: 1, halted: true, stack: []uint64{0x100200}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sample %+v, want %+v", got, want)
	}
	// The machine is stopped for the sample and goes on after it; a
	// halted CPU's stack is not walked.
	if cmds[0] != "stop" || cmds[len(cmds)-1] != "cont" || strings.Contains(strings.Join(cmds, ";"), "cpu 1") {
		t.Fatalf("commands %q", cmds)
	}
}

func TestProfileTallies(t *testing.T) {
	syms := &symbols{addrs: []uint64{0x401000, 0x402000, 0x403000}, names: []string{"leaf", "mid", "top"}}
	p := newProfile(nil)
	p.add([]cpuSample{{cpu: 0, stack: []uint64{0x401010, 0x402004, 0x403000}}, {cpu: 1, halted: true}}, syms)
	p.add([]cpuSample{{cpu: 0, stack: []uint64{0x402010, 0x402020, 0x403000}}}, syms)
	if p.samples[0] != 2 || p.samples[1] != 1 || p.halted[1] != 1 {
		t.Fatalf("samples %v halted %v", p.samples, p.halted)
	}
	// mid is counted once per sample in cum, even when it recurses.
	if !reflect.DeepEqual(p.flat[0], map[string]int{"leaf": 1, "mid": 1}) ||
		!reflect.DeepEqual(p.cum[0], map[string]int{"leaf": 1, "mid": 2, "top": 2}) {
		t.Fatalf("flat %v cum %v", p.flat[0], p.cum[0])
	}
	if got := syms.name(0x400fff); got != "0x400fff" {
		t.Fatalf("name below the first symbol: %q", got)
	}
}
