package ft

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doppel-ft/doppel/ftmirror"
	"github.com/doppel-ft/doppel/net/ethstream"
)

// LinkState is the FT link's state as the shell and /status show it.
type LinkState string

const (
	LinkDown       LinkState = "down"       // no session, none being set up
	LinkConnecting LinkState = "connecting" // dialling or listening for the peer
	LinkUp         LinkState = "up"         // a session is running
	LinkLost       LinkState = "lost"       // the session ended (LastError says why)
)

// Link is the FT link's bookkeeping: the state of its one session, the
// peer, byte counters (rates over the last second) and the transport's
// retransmissions (an ether stream's own, or TCP's through Retransmits). The engine's frames go through Wrap.
type Link struct {
	// Retransmits, if set, reports the transport's retransmitted segments
	// (netstack.Stack.TCP).
	Retransmits func() uint64

	mu      sync.Mutex
	state   LinkState
	peer    string
	since   time.Time
	lastErr string
	samples [2]sample // the newest sample and one at least a second older

	tx, rx atomic.Uint64
	conn   atomic.Pointer[wrapped] // the session Wrap counts last
}

// wrapped is a session's connection and its transport's name, taken when
// it began (a closed TCP connection has no remote address any more).
type wrapped struct {
	c         net.Conn
	transport string
}

type sample struct {
	at     time.Time
	tx, rx uint64
}

// LinkStatus is a snapshot of the link.
type LinkStatus struct {
	State       LinkState `json:"state"`
	Peer        string    `json:"peer"`
	Since       time.Time `json:"since"`
	TxBytes     uint64    `json:"tx_bytes"`
	RxBytes     uint64    `json:"rx_bytes"`
	TxMBps      float64   `json:"tx_mb_s"`
	RxMBps      float64   `json:"rx_mb_s"`
	Transport   string    `json:"transport,omitempty"` // tcp or ether
	Retransmits uint64    `json:"retransmits"`
	LastError   string    `json:"last_error,omitempty"`
}

// Set records a state change.
func (l *Link) Set(s LinkState, peer string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state, l.since = s, time.Now()
	if peer != "" {
		l.peer = peer
	}
	if err != nil {
		l.lastErr = err.Error()
	}
}

// Wrap counts the bytes of c in the link's counters.
func (l *Link) Wrap(c net.Conn) io.ReadWriteCloser {
	w := &wrapped{c: c, transport: string(TransportTCP)}
	if a := c.RemoteAddr(); a != nil {
		w.transport = a.Network()
	}
	l.conn.Store(w)
	return &countingConn{Conn: c, l: l}
}

// TxBytes is the number of bytes written to the link so far.
func (l *Link) TxBytes() uint64 { return l.tx.Load() }

// Status returns the link's state; rates are over the time since the
// sample before the last one that is at least a second old.
func (l *Link) Status() LinkStatus {
	now := time.Now()
	tx, rx := l.tx.Load(), l.rx.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := LinkStatus{State: l.state, Peer: l.peer, Since: l.since, TxBytes: tx, RxBytes: rx, LastError: l.lastErr}
	if st.State == "" {
		st.State = LinkDown
	}
	cur := sample{now, tx, rx}
	if l.samples[0].at.IsZero() {
		l.samples = [2]sample{cur, cur}
	}
	if now.Sub(l.samples[0].at) >= time.Second {
		l.samples[1], l.samples[0] = l.samples[0], cur
	}
	old := l.samples[1]
	if d := now.Sub(old.at).Seconds(); d > 0.05 {
		st.TxMBps = float64(tx-old.tx) / d / 1e6
		st.RxMBps = float64(rx-old.rx) / d / 1e6
	}
	var c net.Conn
	if w := l.conn.Load(); w != nil {
		c, st.Transport = w.c, w.transport
	}
	if es, ok := c.(*ethstream.Conn); ok {
		x := es.Stats()
		st.Retransmits = x.FastRetransmits + x.TimeoutRetransmits
	} else if l.Retransmits != nil {
		st.Retransmits = l.Retransmits()
	}
	return st
}

type countingConn struct {
	net.Conn
	l *Link
}

// Abort aborts the link if it can (ftmirror.Aborter), else closes it.
func (c *countingConn) Abort() error {
	if a, ok := c.Conn.(ftmirror.Aborter); ok {
		return a.Abort()
	}
	return c.Conn.Close()
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.l.rx.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.l.tx.Add(uint64(n))
	return n, err
}
