package wiretest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/nic/nictest"
)

func TestParseRoundTrip(t *testing.T) {
	f := build([6]byte{2, 0, 0, 0, 0, 1}, kindData, 77, 1000, 1514)
	p, ok := parse(f)
	if !ok || p.kind != kindData || p.seq != 77 || p.total != 1000 || !p.intact || len(f) != 1514 {
		t.Fatalf("parse = %+v, %v", p, ok)
	}
	f[700]++
	if p, _ := parse(f); p.intact {
		t.Error("a changed byte went unnoticed")
	}
	f[12] = 0x08
	if _, ok := parse(f); ok {
		t.Error("foreign EtherType parsed")
	}
	if _, ok := parse(f[:20]); ok {
		t.Error("short frame parsed")
	}
}

func TestPingAndBlastOverFakes(t *testing.T) {
	a, b := nictest.Pair(nictest.Config{TxRing: 32, RxQueue: 4096})
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var reports []ServeResult
	done := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	go func() {
		done <- Serve(sctx, b, func(r ServeResult) {
			mu.Lock()
			reports = append(reports, r)
			mu.Unlock()
		})
	}()
	if err := Handshake(ctx, a); err != nil {
		t.Fatal(err)
	}
	pr, err := Ping(ctx, a, 20, 1000)
	if err != nil || pr.Replies != 20 || pr.Corrupt != 0 {
		t.Fatalf("ping: %v, %v", pr, err)
	}
	br, err := Blast(ctx, a, 2000, 1514)
	if err != nil {
		t.Fatal(err)
	}
	if br.Sent != 2000 || br.Acknowledged != 2000 {
		t.Errorf("blast: %v", br)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || reports[0].Frames != 2000 || reports[0].Lost() != 0 || reports[0].Bytes != 2000*1514 {
		t.Errorf("server reports %v", reports)
	}
}
