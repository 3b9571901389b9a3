package netstack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// DHCP message layout and options (RFC 2131 section 2, RFC 2132).
const (
	dhcpHeaderLen = 236 // op .. file, before the magic cookie
	dhcpMagic     = 0x63825363

	dhcpOpRequest = 1
	dhcpOpReply   = 2
	dhcpFlagBcast = 0x8000 // the server replies by broadcast

	optPad         = 0
	optSubnetMask  = 1
	optRouter      = 3
	optRequestedIP = 50
	optLeaseTime   = 51
	optMsgType     = 53
	optServerID    = 54
	optParamList   = 55
	optEnd         = 255
)

// DHCP message types (RFC 2132 section 9.6).
const (
	dhcpDiscover = 1
	dhcpOffer    = 2
	dhcpRequest  = 3
	dhcpDecline  = 4
	dhcpAck      = 5
	dhcpNak      = 6
)

var errDHCPShort = errors.New("dhcp: message too short")

// dhcpMsg is the part of a DHCP message doppel uses.
type dhcpMsg struct {
	op       byte
	xid      uint32
	flags    uint16
	yiaddr   netip.Addr
	chaddr   [6]byte
	msgType  byte
	mask     netip.Addr
	router   netip.Addr
	serverID netip.Addr
	reqIP    netip.Addr
	lease    uint32 // seconds
}

func addr4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }

// encode returns the message with its options.
func (m *dhcpMsg) encode() []byte {
	b := make([]byte, dhcpHeaderLen, 300)
	b[0], b[1], b[2] = m.op, 1, 6 // htype Ethernet, hlen 6
	binary.BigEndian.PutUint32(b[4:], m.xid)
	binary.BigEndian.PutUint16(b[10:], m.flags)
	if m.yiaddr.IsValid() {
		a := m.yiaddr.As4()
		copy(b[16:], a[:])
	}
	copy(b[28:], m.chaddr[:])
	b = binary.BigEndian.AppendUint32(b, dhcpMagic)
	b = append(b, optMsgType, 1, m.msgType)
	for _, o := range []struct {
		code byte
		a    netip.Addr
	}{{optSubnetMask, m.mask}, {optRouter, m.router}, {optServerID, m.serverID}, {optRequestedIP, m.reqIP}} {
		if o.a.IsValid() {
			a := o.a.As4()
			b = append(append(b, o.code, 4), a[:]...)
		}
	}
	if m.lease != 0 {
		b = binary.BigEndian.AppendUint32(append(b, optLeaseTime, 4), m.lease)
	}
	if m.op == dhcpOpRequest {
		b = append(b, optParamList, 2, optSubnetMask, optRouter)
	}
	b = append(b, optEnd)
	for len(b) < 300 { // BOOTP's minimum size, which some servers want
		b = append(b, optPad)
	}
	return b
}

// parseDHCP decodes a message; options it does not know are skipped.
func parseDHCP(b []byte) (dhcpMsg, error) {
	var m dhcpMsg
	if len(b) < dhcpHeaderLen+4 {
		return m, errDHCPShort
	}
	if b[1] != 1 || b[2] != 6 {
		return m, fmt.Errorf("dhcp: hardware type %d length %d, want Ethernet", b[1], b[2])
	}
	if binary.BigEndian.Uint32(b[dhcpHeaderLen:]) != dhcpMagic {
		return m, errors.New("dhcp: no magic cookie")
	}
	m.op, m.xid, m.flags = b[0], binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint16(b[10:])
	m.yiaddr = addr4(b[16:])
	copy(m.chaddr[:], b[28:34])
	opts := b[dhcpHeaderLen+4:]
	for len(opts) > 0 {
		code := opts[0]
		if code == optPad {
			opts = opts[1:]
			continue
		}
		if code == optEnd {
			break
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			return m, fmt.Errorf("dhcp: option %d overruns the message", code)
		}
		v := opts[2 : 2+int(opts[1])]
		opts = opts[2+len(v):]
		switch {
		case code == optMsgType && len(v) == 1:
			m.msgType = v[0]
		case code == optSubnetMask && len(v) == 4:
			m.mask = addr4(v)
		case code == optRouter && len(v) >= 4:
			m.router = addr4(v)
		case code == optServerID && len(v) == 4:
			m.serverID = addr4(v)
		case code == optRequestedIP && len(v) == 4:
			m.reqIP = addr4(v)
		case code == optLeaseTime && len(v) == 4:
			m.lease = binary.BigEndian.Uint32(v)
		case code == optMsgType || code == optSubnetMask || code == optRouter || code == optServerID ||
			code == optRequestedIP || code == optLeaseTime:
			return m, fmt.Errorf("dhcp: option %d has length %d", code, len(v))
		}
	}
	if m.msgType == 0 {
		return m, errors.New("dhcp: no message type")
	}
	return m, nil
}

// config is the address configuration a DHCPACK grants.
func (m *dhcpMsg) config() (Config, error) {
	if !m.yiaddr.Is4() || m.yiaddr.IsUnspecified() {
		return Config{}, errors.New("dhcp: no address offered")
	}
	bits := 24
	if m.mask.IsValid() {
		mask := binary.BigEndian.Uint32(m.mask.AsSlice())
		bits = 0
		for mask&(1<<31) != 0 {
			bits++
			mask <<= 1
		}
		if mask != 0 || bits == 0 {
			return Config{}, fmt.Errorf("dhcp: subnet mask %v is not a prefix", m.mask)
		}
	}
	c := Config{Addr: netip.PrefixFrom(m.yiaddr, bits), DHCP: true}
	if m.router.IsValid() && !m.router.IsUnspecified() && c.Addr.Masked().Contains(m.router) {
		c.Gateway = m.router
	}
	return c, nil
}
