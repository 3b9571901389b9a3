package main

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
)

// Loss of carrier on the FT link. On the direct cable between a pair the
// primary's death drops the secondary's link at once (its PHY loses the
// peer's signal), long before the heartbeat deadline: with
// doppel.ft.carrier=1 (the default) the secondary ends its session then,
// as if the primary had closed the link, and so promotes at once
// (ftmirror/doc.go, "Failure detection and split brain", rule 2a). The
// cost is the split brain a cut cable (or a switch between the pair that
// reports its own link) would cause: set it to 0 there and rely on the
// heartbeat.

const flagFTCarrier = "doppel.ft.carrier"

// carrierPoll is how often a secondary reads its FT NIC's link state
// during a session (one register read).
const carrierPoll = 5 * time.Millisecond

// errCarrierLost ends a session whose link lost its carrier. It wraps
// io.EOF: for the engine the peer is gone, as when it closed the link.
var errCarrierLost = fmt.Errorf("ft: the FT link lost its carrier: %w", io.EOF)

// carrierConn is the secondary's link, which watchCarrier closes when the
// carrier goes; its reads and writes then fail with errCarrierLost.
type carrierConn struct {
	io.ReadWriteCloser
	lost atomic.Bool
}

// Abort aborts the link if it can (ftmirror.Aborter), else closes it.
func (c *carrierConn) Abort() error {
	if a, ok := c.ReadWriteCloser.(ftmirror.Aborter); ok {
		return a.Abort()
	}
	return c.ReadWriteCloser.Close()
}

func (c *carrierConn) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	if err != nil && c.lost.Load() {
		err = errCarrierLost
	}
	return n, err
}

func (c *carrierConn) Write(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Write(p)
	if err != nil && c.lost.Load() {
		err = errCarrierLost
	}
	return n, err
}

// watchCarrier closes c when the FT NIC's link goes down, until done.
func (n *ftNode) watchCarrier(c *carrierConn, done <-chan struct{}) {
	if pollUntil(carrierPoll, done, func() bool { return !n.ifc.NIC.LinkUp() }) {
		c.lost.Store(true)
		n.k.log.Printf("ft", "%s lost its carrier: the primary is gone", n.ifc.NIC.Name())
		c.Close()
	}
}

// pollUntil checks cond every period until it holds (true) or done is
// closed (false).
func pollUntil(period time.Duration, done <-chan struct{}, cond func() bool) bool {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return false
		case <-t.C:
		}
		if cond() {
			return true
		}
	}
}
