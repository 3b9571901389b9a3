package lapic

import (
	"sync"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// machine builds n enabled LAPICs (IDs 0..n-1) behind one Router.
func machine(t *testing.T, n int) (*Router, []*LAPIC) {
	t.Helper()
	r := NewRouter()
	c := &fakeClock{}
	var ls []*LAPIC
	for i := 0; i < n; i++ {
		l := New(Config{ID: uint32(i), BSP: i == 0, Clock: c, TSCHz: testTSCHz, Sink: r})
		enable(l)
		r.Add(l)
		ls = append(ls, l)
	}
	return r, ls
}

// pendingSet returns which LAPICs have vector v pending, and clears it.
func pendingSet(ls []*LAPIC, v uint8) []int {
	var got []int
	for i, l := range ls {
		if p, ok := l.PendingVector(); ok && p == v {
			got = append(got, i)
			l.Ack(v)
			l.Deliver(devices.Message{}) // no-op: vector 0 is refused
			wr(l, RegEOI, 0)
			wr(l, RegESR, 0)
			wr(l, RegESR, 0)
		}
	}
	return got
}

func TestRouterDestinations(t *testing.T) {
	r, ls := machine(t, 4)
	// flat gives LAPIC i logical bit i; cluster puts LAPICs 0 and 1 in
	// cluster 0 and LAPICs 2 and 3 in cluster 1, members bits 0 and 1.
	setModel := func(cluster bool) {
		for i, l := range ls {
			if cluster {
				wr(l, RegDFR, DFRCluster<<28)
				wr(l, RegLDR, uint32(i/2<<4|1<<(i%2))<<24)
			} else {
				wr(l, RegDFR, DFRFlat<<28)
				wr(l, RegLDR, 1<<(24+i))
			}
		}
	}
	for _, tc := range []struct {
		name    string
		cluster bool
		m       devices.Message
		want    []int
	}{
		{"physical", false, devices.Message{Dest: 2}, []int{2}},
		{"physical broadcast", false, devices.Message{Dest: 0xFF}, []int{0, 1, 2, 3}},
		{"physical nobody", false, devices.Message{Dest: 9}, nil},
		{"flat", false, devices.Message{Dest: 0x03, DestLogical: true}, []int{0, 1}},
		{"flat one", false, devices.Message{Dest: 0x02, DestLogical: true}, []int{1}},
		{"flat broadcast", false, devices.Message{Dest: 0xFF, DestLogical: true}, []int{0, 1, 2, 3}},
		{"cluster", true, devices.Message{Dest: 0x13, DestLogical: true}, []int{2, 3}},
		{"cluster member", true, devices.Message{Dest: 0x12, DestLogical: true}, []int{3}},
		{"cluster zero", true, devices.Message{Dest: 0x01, DestLogical: true}, []int{0}},
		{"cluster other", true, devices.Message{Dest: 0x23, DestLogical: true}, nil},
		{"cluster broadcast", true, devices.Message{Dest: 0xF1, DestLogical: true}, []int{0, 2}},
		{"lowest priority", false, devices.Message{Dest: 0xFF, Mode: devices.DeliveryLowestPriority}, []int{0}},
		{"lowest priority logical", false, devices.Message{Dest: 0x02, DestLogical: true, Mode: devices.DeliveryLowestPriority}, []int{1}},
		{"self", false, devices.Message{Shorthand: ShorthandSelf, Source: 3}, []int{3}},
		{"all", false, devices.Message{Shorthand: ShorthandAll, Source: 3}, []int{0, 1, 2, 3}},
		{"all but self", false, devices.Message{Shorthand: ShorthandAllButSelf, Source: 1}, []int{0, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setModel(tc.cluster)
			tc.m.Vector = 0x50
			r.Deliver(tc.m)
			got := pendingSet(ls, 0x50)
			if len(got) != len(tc.want) {
				t.Fatalf("delivered to %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("delivered to %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestRouterIPIAndINITSIPI(t *testing.T) {
	_, ls := machine(t, 3)
	bsp := ls[0]
	// The Linux AP bring-up sequence from the BSP to APIC 2.
	wr(bsp, RegICRHigh, 2<<24)
	wr(bsp, RegICRLow, ICRAssert|ICRLevel|5<<8)
	wr(bsp, RegICRLow, ICRLevel|5<<8)
	wr(bsp, RegICRLow, ICRAssert|6<<8|0x9A)
	wr(bsp, RegICRLow, ICRAssert|6<<8|0x9A)
	if !ls[2].TakeINIT() || ls[1].TakeINIT() {
		t.Fatal("INIT not at APIC 2 alone")
	}
	if v, ok := ls[2].TakeSIPI(); !ok || v != 0x9A {
		t.Fatalf("SIPI = %#x %v", v, ok)
	}
	// x2APIC IPI between two x2APIC-mode LAPICs.
	for _, l := range ls[:2] {
		if err := l.WriteMSR(MSRAPICBase, DefaultBase|APICBaseEnable|APICBaseExtd); err != nil {
			t.Fatal(err)
		}
	}
	if err := ls[0].WriteMSR(MSRx2APICICR, 1<<32|0x61); err != nil {
		t.Fatal(err)
	}
	if v, ok := ls[1].PendingVector(); !ok || v != 0x61 {
		t.Fatalf("x2APIC IPI: %#x %v", v, ok)
	}
	// x2APIC logical: cluster 0, member bit 1 is APIC 1.
	if err := ls[0].WriteMSR(MSRx2APICICR, 0x2<<32|ICRDestLogical|0x62); err != nil {
		t.Fatal(err)
	}
	if got := pendingSet(ls, 0x62); len(got) != 1 || got[0] != 1 {
		t.Fatalf("x2APIC logical IPI went to %v", got)
	}
}

// TestRouterConcurrent has every vCPU thread send IPIs to the next while
// taking its own; run it with -race.
func TestRouterConcurrent(t *testing.T) {
	const n, rounds = 4, 2000
	_, ls := machine(t, n)
	var wg sync.WaitGroup
	got := make([]int, n)
	for i := range ls {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l := ls[i]
			for k := 0; k < rounds; k++ {
				wr(l, RegICRHigh, uint32((i+1)%n)<<24)
				wr(l, RegICRLow, uint32(0x40+i))
				if v, ok := l.PendingVector(); ok {
					if v != uint8(0x40+(i+n-1)%n) {
						t.Errorf("APIC %d got vector %#x", i, v)
					}
					l.Ack(v)
					wr(l, RegEOI, 0)
					got[i]++
				}
			}
		}(i)
	}
	wg.Wait()
	for i, l := range ls {
		if v, ok := l.PendingVector(); ok {
			l.Ack(v)
			got[i]++
		}
		if got[i] == 0 {
			t.Errorf("APIC %d took no IPI", i)
		}
	}
}
