package ft

import (
	"bytes"
	"context"
	"math"
	"os"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/ftmirror/simguest"
	"github.com/doppel-ft/doppel/net/linktest"
	"github.com/doppel-ft/doppel/net/netstack"
)

// syncBuffer is a console both sides write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type simRun struct {
	prim, sec       *Sim
	pOut, sOut      *syncBuffer
	killedAt        chan uint64 // epoch of the kill point
	primEnd, secEnd *linktest.End
}

// runPair runs a primary and a secondary Sim across an in-memory wire
// through two network stacks, as two doppel kernels do across NICs, and
// returns once the secondary has finished. The primary's kill cuts its
// side of the wire and freezes the engine at the point (as a killed
// machine would stop there).
func runPair(t *testing.T, kill string, faults linktest.Faults, run time.Duration, transport Transport) *simRun {
	t.Helper()
	ea, eb := linktest.Pair(linktest.Config{Faults: faults, BytesPerSec: 200e6})
	r := &simRun{pOut: &syncBuffer{}, sOut: &syncBuffer{}, killedAt: make(chan uint64, 1), primEnd: ea, secEnd: eb}
	var stacks [2]*netstack.Stack
	var ifs [2]*netstack.Interface
	for i, spec := range []string{"10.7.0.1/24", "10.7.0.2/24"} {
		st, err := netstack.New()
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := netstack.ParseConfig(spec)
		ifc, err := st.Add([]*linktest.End{ea, eb}[i], cfg)
		if err != nil {
			t.Fatal(err)
		}
		stacks[i], ifs[i] = st, ifc
	}
	freeze := make(chan struct{})
	t.Cleanup(func() {
		close(freeze)
		stacks[0].Close()
		stacks[1].Close()
	})

	engine := ftmirror.Config{Epoch: 25 * time.Millisecond, GroupBytes: 64 << 10, Forward: true,
		Heartbeat: ftmirror.Heartbeat{Interval: 10 * time.Millisecond, Misses: 300}} // 3 s: this shared 2-core host stalls processes for a second or more
	if d := os.Getenv("FT_TEST_HB_MISSES"); d != "" {
		engine.Heartbeat.Misses, _ = strconv.Atoi(d)
	}
	params := simguest.Params{Pages: 4096, Seed: 7, Rate: 3000}
	probe := int64(4 << 20)
	if raceBuild || os.Getenv("FT_TEST_SMALL") != "" {
		// Under the race detector, or QEMU TCG, TCP through the stack moves
		// a few MB/s: a smaller, slower guest and a longer deadline.
		params, probe = simguest.Params{Pages: 1024, Seed: 7, Rate: 200}, 1<<20
		engine.Heartbeat.Misses = 300
	}
	var err error
	r.prim, err = NewSim(SimConfig{Role: RolePrimary, Guest: params, Engine: engine, Stack: stacks[0], Iface: ifs[0],
		Kill: kill, ProbeBytes: probe, Report: 500 * time.Millisecond, Out: r.pOut,
		OnKill: func(p ftmirror.Point, e uint64) {
			ea.SetLinkDown(true)
			r.killedAt <- e
			<-freeze
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.sec, err = NewSim(SimConfig{Role: RoleSecondary, Guest: params, Engine: engine, Stack: stacks[1], Iface: ifs[1],
		Peer: ifs[0].Config.Addr.Addr(), ProbeBytes: probe, Out: r.sOut, Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.prim.Run(ctx)
	done := make(chan error, 1)
	go func() { done <- r.sec.Run(ctx) }()
	if kill == "" {
		time.Sleep(run)
		ea.SetLinkDown(true) // the primary's machine dies
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("secondary did not finish in 60 s\nprimary:\n%s\nsecondary:\n%s", r.pOut, r.sOut)
	}
	return r
}

// TestSimKillPoints kills the primary at protocol points (as the QEMU
// test kills its emulator) and checks that the secondary takes over at
// least at the epoch the primary had acked, with verify: ok.
func TestSimKillPoints(t *testing.T) {
	for _, tc := range []struct {
		kill      string
		takeover  bool
		transport Transport
	}{
		{kill: "sync-round:1"},
		{kill: "mid-epoch:6", takeover: true},
		{kill: "mid-group:6", takeover: true},
		{kill: "after-end:6", takeover: true},
		{kill: "acked:6", takeover: true},
		{kill: "sync-round:1", transport: TransportEther},
		{kill: "mid-group:6", takeover: true, transport: TransportEther},
		{kill: "acked:6", takeover: true, transport: TransportEther},
	} {
		name := tc.kill
		if tc.transport != "" {
			name = string(tc.transport) + "/" + tc.kill
		}
		t.Run(name, func(t *testing.T) {
			r := runPair(t, tc.kill, linktest.Faults{}, 0, tc.transport)
			res := r.sec.Result()
			t.Logf("secondary:\n%s", r.sOut)
			if res.Verify != "ok" {
				t.Fatalf("verify %s: %v\nprimary:\n%s", res.Verify, res.Details, r.pOut)
			}
			if res.Promoted != tc.takeover {
				if f, err := os.Create("/tmp/ft-goroutines.txt"); err == nil {
					pprof.Lookup("goroutine").WriteTo(f, 2)
					f.Close()
				}
				t.Fatalf("promoted=%v, want %v\nprimary:\n%s", res.Promoted, tc.takeover, r.pOut)
			}
			var ke uint64
			select {
			case ke = <-r.killedAt:
			default:
				t.Fatal("the kill point was never reached")
			}
			if strings.HasPrefix(tc.kill, "acked") && res.Epoch < ke {
				t.Fatalf("took over at epoch %d, but the primary had an ack for %d", res.Epoch, ke)
			}
			if !strings.Contains(r.sOut.String(), "verify: ok") {
				t.Fatal("no verify: ok line on the secondary's console")
			}
		})
	}
}

// TestSimLossyWire runs the engine over a wire that loses, reorders,
// duplicates and corrupts frames: the transport (TCP, or the ether
// stream) recovers, checkpoints continue, and the takeover verifies.
func TestSimLossyWire(t *testing.T) {
	for _, tr := range []Transport{TransportTCP, TransportEther} {
		t.Run(string(tr), func(t *testing.T) { simLossyWire(t, tr) })
	}
}

func simLossyWire(t *testing.T, transport Transport) {
	r := runPair(t, "", linktest.Faults{Loss: 0.01, Reorder: 0.02, Duplicate: 0.005, Corrupt: 0.002, Seed: 9}, 4*time.Second, transport)
	res := r.sec.Result()
	t.Logf("primary:\n%s\nsecondary:\n%s", r.pOut, r.sOut)
	if res.Verify != "ok" || !res.Promoted {
		lost, reord, dup := r.primEnd.Faulted()
		sl, sr, sd := r.secEnd.Faulted()
		t.Logf("primary->secondary lost %d reordered %d dup %d; back lost %d reordered %d dup %d; primary tcp %+v; secondary tcp %+v; ends %+v %+v",
			lost, reord, dup, sl, sr, sd, r.prim.cfg.Stack.TCP(), r.sec.cfg.Stack.TCP(), r.primEnd.Counters(), r.secEnd.Counters())
		t.Fatalf("verify %s promoted %v: %v", res.Verify, res.Promoted, res.Details)
	}
	lost, reord, _ := r.primEnd.Faulted()
	st := r.prim.Status()
	if lost == 0 || reord == 0 || st.Retransmits == 0 || r.primEnd.Corrupted() == 0 {
		t.Fatalf("lost %d reordered %d corrupted %d retransmits %d: the faults were not exercised", lost, reord, r.primEnd.Corrupted(), st.Retransmits)
	}
	if got := r.prim.Link.Status().Transport; got != string(transport) {
		t.Errorf("the session ran on %q, want %q", got, transport)
	}
	if st.Checkpoints < 10 || res.Epoch < 10 {
		t.Fatalf("%d checkpoints, takeover at epoch %d in 4 s of 25 ms epochs", st.Checkpoints, res.Epoch)
	}
	// The sync's wire figures, consistent with themselves. (Not against the
	// guest's 16 MiB: pages the guest has not written yet are zero and are
	// not sent, so a guest slowed by -race or load syncs in a few MB.)
	m := regexp.MustCompile(`initial sync: .*; ([\d.]+) MB on the wire in ([\d.]+) s \(([\d.]+) MB/s\)`).FindStringSubmatch(r.pOut.String())
	if m == nil {
		t.Fatal("no sync wire figures on the primary's console")
	}
	mb, _ := strconv.ParseFloat(m[1], 64)
	secs, _ := strconv.ParseFloat(m[2], 64)
	rate, _ := strconv.ParseFloat(m[3], 64)
	if mb <= 0 || secs <= 0 || math.Abs(mb/secs-rate) > 0.05+0.02*rate {
		t.Errorf("sync figures %q: %s MB in %s s is not %s MB/s", m[0], m[1], m[2], m[3])
	}
}

func TestParseKill(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want killPoint
		err  bool
	}{
		{in: "", want: killPoint{}},
		{in: "mid-group", want: killPoint{ftmirror.PointMidGroup, 3, true}},
		{in: "acked:9", want: killPoint{ftmirror.PointAcked, 9, true}},
		{in: "sync-round", want: killPoint{ftmirror.PointSyncRound, 1, true}},
		{in: "nowhere", err: true},
		{in: "acked:x", err: true},
	} {
		got, err := parseKill(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseKill(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestSyscallDelta(t *testing.T) {
	for _, tt := range []struct {
		name string
		a, b map[string]uint64
		mb   float64
		want string
	}{
		{"most frequent first", map[string]uint64{"0": 10, "202": 5}, map[string]uint64{"0": 30, "202": 45, "1": 20}, 10, "202: 4, 0: 2, 1: 2"},
		{"rare ones summed", map[string]uint64{}, map[string]uint64{"35": 100, "9": 2, "56": 1}, 10, "35: 10, others: 0.3"},
		{"none grew", map[string]uint64{"0": 7}, map[string]uint64{"0": 7}, 1, ""},
		{"a counter that went back is skipped", map[string]uint64{"0": 9}, map[string]uint64{"0": 3, "1": 4}, 1, "1: 4"},
	} {
		if got := syscallDelta(tt.a, tt.b, tt.mb); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
