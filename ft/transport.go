package ft

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/doppel-ft/doppel/net/ethstream"
	"github.com/doppel-ft/doppel/net/netstack"
)

// Transport is the byte stream an FT session runs on.
type Transport string

const (
	// TransportTCP runs the session over TCP through the network stack.
	TransportTCP Transport = "tcp"
	// TransportEther runs it over net/ethstream: frames of their own
	// EtherType straight on the FT NIC, with their own loss recovery,
	// after a rendezvous over TCP that exchanges the MAC addresses. On a
	// slow CPU it carries more than TCP because it does less per frame
	// (issue 9's note in docs/design.md has the figures).
	TransportEther Transport = "ether"
)

// Transports are the accepted values of doppel.ft.transport.
var Transports = []string{string(TransportTCP), string(TransportEther)}

// ParseTransport reads a transport's name; "" is TCP.
func ParseTransport(s string) (Transport, error) {
	switch Transport(s) {
	case "", TransportTCP:
		return TransportTCP, nil
	case TransportEther:
		return TransportEther, nil
	}
	return "", fmt.Errorf("ft: unknown transport %q (want tcp or ether)", s)
}

// EtherPort is the TCP port of the ether transport's rendezvous for the
// session port p (p+1 is the simulation's baseline).
func EtherPort(p uint16) uint16 { return p + 2 }

// The rendezvous: the dialling side (the secondary) sends a request, the
// listening side (the primary) opens its stream and answers; both then
// close the TCP connection and the session runs on the stream.
//
//	request: magic[8] mac[6] session[4] mtu[2]
//	answer:  magic[8] mac[6] status[1] pad[1] mtu[2]
const (
	rdvMagic      = "DPLETHR1"
	rdvRequestLen = 20
	rdvAnswerLen  = 18
	rdvTimeout    = 10 * time.Second

	rdvOK   = 0
	rdvBusy = 1 // the session number is in use: pick another
	rdvMTU  = 2 // the two NICs' MTUs differ
)

// ErrRendezvous is the ether transport's rendezvous failing: a bad or
// refused request or answer (the error says which).
var ErrRendezvous = errors.New("ft: ether transport rendezvous")

// Listener accepts FT sessions over both transports: TCP on the session
// port and the ether transport's rendezvous on EtherPort. Whichever the
// secondary chose, Accept returns its session's connection.
type Listener struct {
	tcp, rdv net.Listener
	ifc      *netstack.Interface
	conns    chan net.Conn
	errs     chan error
	done     chan struct{}
	once     sync.Once

	// latest is each peer's stream from its latest rendezvous. A peer
	// that asks again has given up on the stream it was answered before
	// (its answer came too late, or it restarted), so that stream is
	// closed: the engine, waiting on it for a HELLO that will not come,
	// or about to take it from conns, moves on to the new one.
	mu     sync.Mutex
	latest map[[6]byte]net.Conn
}

// Listen listens for FT sessions on ap (its port is the session port) of
// the stack st, whose FT NIC is ifc.
func Listen(st *netstack.Stack, ifc *netstack.Interface, ap netip.AddrPort) (*Listener, error) {
	tl, err := st.Listen(ap)
	if err != nil {
		return nil, err
	}
	rl, err := st.Listen(netip.AddrPortFrom(ap.Addr(), EtherPort(ap.Port())))
	if err != nil {
		tl.Close()
		return nil, err
	}
	l := &Listener{tcp: tl, rdv: rl, ifc: ifc, conns: make(chan net.Conn), errs: make(chan error, 2), done: make(chan struct{}),
		latest: make(map[[6]byte]net.Conn)}
	go l.loop(tl, func(c net.Conn) (net.Conn, error) { return c, nil })
	go l.loop(rl, l.rendezvous)
	return l, nil
}

// loop accepts on one listener and hands each session to Accept. A bad or
// refused rendezvous closes that connection and the loop goes on (the
// dialler gets the reason); only the listener's own failure reaches
// Accept as an error.
func (l *Listener) loop(ln net.Listener, open func(net.Conn) (net.Conn, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			default:
			}
			return
		}
		go func() {
			s, err := open(c)
			if err != nil {
				c.Close()
				return
			}
			select {
			case l.conns <- s:
			case <-l.done:
				s.Close()
			}
		}()
	}
}

// rendezvous answers one ether transport request and returns the stream.
func (l *Listener) rendezvous(c net.Conn) (net.Conn, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(rdvTimeout))
	var req [rdvRequestLen]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return nil, fmt.Errorf("%w: request: %v", ErrRendezvous, err)
	}
	if string(req[:8]) != rdvMagic {
		return nil, fmt.Errorf("%w: bad request %x", ErrRendezvous, req[:8])
	}
	var peer [6]byte
	copy(peer[:], req[8:14])
	session := binary.BigEndian.Uint32(req[14:18])
	mtu := int(binary.BigEndian.Uint16(req[18:20]))
	raw := l.ifc.Link.Raw()
	answer := make([]byte, rdvAnswerLen)
	copy(answer, rdvMagic)
	mac := l.ifc.NIC.MAC()
	copy(answer[8:], mac[:])
	binary.BigEndian.PutUint16(answer[16:], uint16(raw.MTU()))
	if mtu != raw.MTU() {
		// A stream's frames are as long as its sender's MTU allows; the
		// peer's NIC would drop longer ones without a word.
		answer[14] = rdvMTU
		c.Write(answer)
		return nil, fmt.Errorf("%w: the peer's MTU is %d, this NIC's %d", ErrRendezvous, mtu, raw.MTU())
	}
	s, err := l.ifc.Stream.Open(ethstream.Config{Local: mac, Peer: peer, Session: session})
	if err != nil {
		answer[14] = rdvBusy
		c.Write(answer)
		return nil, fmt.Errorf("%w: %v", ErrRendezvous, err)
	}
	l.supersede(peer, s) // before the answer: the peer may ask again at once
	if _, err := c.Write(answer); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: answer: %v", ErrRendezvous, err)
	}
	return s, nil
}

// supersede records s as peer's latest stream and closes the one before
// it, if any.
func (l *Listener) supersede(peer [6]byte, s net.Conn) {
	l.mu.Lock()
	old := l.latest[peer]
	l.latest[peer] = s
	l.mu.Unlock()
	if old != nil {
		old.Close() // a closed stream's Close is harmless
	}
}

// Accept returns the next session's connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		l.Close()
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops both listeners.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.tcp.Close()
		l.rdv.Close()
	})
	return nil
}

// Addr is the session port's address.
func (l *Listener) Addr() net.Addr { return l.tcp.Addr() }

// Dial opens a session to the primary at ap (its session port) over
// transport t, on the stack st whose FT NIC is ifc.
func Dial(ctx context.Context, st *netstack.Stack, ifc *netstack.Interface, ap netip.AddrPort, t Transport) (net.Conn, error) {
	if t != TransportEther {
		return st.Dial(ctx, ap)
	}
	for tries := 0; ; tries++ {
		s, err := dialEther(ctx, st, ifc, ap)
		if !errors.Is(err, errBusy) || tries == 3 {
			return s, err
		}
	}
}

// newSession is a random nonzero stream session number: a new one for
// each connection, so frames of an old one still in flight are not taken
// for the new one's.
func newSession() uint32 {
	var b [4]byte
	for binary.BigEndian.Uint32(b[:]) == 0 {
		rand.Read(b[:])
	}
	return binary.BigEndian.Uint32(b[:])
}

var errBusy = errors.New("ft: the primary has that stream session open")

func dialEther(ctx context.Context, st *netstack.Stack, ifc *netstack.Interface, ap netip.AddrPort) (net.Conn, error) {
	rap := netip.AddrPortFrom(ap.Addr(), EtherPort(ap.Port()))
	c, err := st.Dial(ctx, rap)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(rdvTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	sid := newSession()
	mac := ifc.NIC.MAC()
	raw := ifc.Link.Raw()
	req := make([]byte, rdvRequestLen)
	copy(req, rdvMagic)
	copy(req[8:], mac[:])
	binary.BigEndian.PutUint32(req[14:], sid)
	binary.BigEndian.PutUint16(req[18:], uint16(raw.MTU()))
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("%w with %v: %v", ErrRendezvous, rap, err)
	}
	var ans [rdvAnswerLen]byte
	if _, err := io.ReadFull(c, ans[:]); err != nil {
		return nil, fmt.Errorf("%w with %v: no answer: %v (is the primary's doppel this version?)", ErrRendezvous, rap, err)
	}
	if !bytes.Equal(ans[:8], []byte(rdvMagic)) {
		return nil, fmt.Errorf("%w with %v: bad answer %x", ErrRendezvous, rap, ans[:8])
	}
	if ans[14] == rdvBusy {
		return nil, errBusy
	}
	mtu := int(binary.BigEndian.Uint16(ans[16:18]))
	switch {
	case ans[14] == rdvMTU || ans[14] == rdvOK && mtu != raw.MTU():
		return nil, fmt.Errorf("%w with %v: the FT NICs' MTUs differ (%d here, %d there): give both the same doppel.nic.mtu", ErrRendezvous, rap, raw.MTU(), mtu)
	case ans[14] != rdvOK:
		return nil, fmt.Errorf("%w with %v: refused (status %d)", ErrRendezvous, rap, ans[14])
	}
	var peer [6]byte
	copy(peer[:], ans[8:14])
	return ifc.Stream.Open(ethstream.Config{Local: mac, Peer: peer, Session: sid})
}
