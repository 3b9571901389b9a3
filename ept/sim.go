package ept

import "fmt"

// SimCPU plays the processor's side of EPT for host tests and simulators:
// it translates guest accesses through the tables as SDM Vol. 3C 29.3
// describes, sets the accessed flag of every entry it uses and the dirty
// flag of the leaf of a write, and logs the page in a PML buffer when that
// flag goes from 0 to 1 (29.3.6). It has no TLB, as if INVEPT ran before
// every access, and it writes guest RAM through the PhysMem's Region when
// one is given.
type SimCPU struct {
	T *Tables
	// PML enables page-modification logging into Log at Index.
	PML   bool
	Log   [PMLEntries]uint64
	Index uint16
	// PMLFull is the PML-full VM exit; it must drain the log (the write
	// is retried after it).
	PMLFull func()
	// RAM, when set, receives the bytes of Write32.
	RAM *Region
}

// ErrSimViolation is an EPT violation of a simulated access.
var ErrSimViolation = fmt.Errorf("ept: simulated EPT violation")

// NewSimCPU returns a SimCPU over t with the PML index at 511.
func NewSimCPU(t *Tables) *SimCPU { return &SimCPU{T: t, Index: PMLIndexStart} }

// Access translates gpa for a read or a write and returns the host address.
func (c *SimCPU) Access(gpa uint64, write bool) (uint64, error) {
	if gpa >= MaxGPA {
		return 0, fmt.Errorf("%w: gpa %#x", ErrSimViolation, gpa)
	}
	pa := c.T.root
	for level := levelPML4; ; level-- {
		e := &c.T.mem.Table(pa)[levelIndex(gpa, level)]
		f := c.T.f
		if !f.present(*e) {
			return 0, fmt.Errorf("%w: gpa %#x not mapped", ErrSimViolation, gpa)
		}
		if f.nested && *e&NPTUser == 0 {
			return 0, fmt.Errorf("%w: gpa %#x: nested entry without U/S", ErrSimViolation, gpa)
		}
		if c.T.ad {
			*e |= f.accessed
		}
		if !f.isLeaf(*e, level) {
			pa = *e & AddrMask
			continue
		}
		if p := f.perm(*e); write && p&Write == 0 || !write && p&Read == 0 {
			return 0, fmt.Errorf("%w: gpa %#x %v", ErrSimViolation, gpa, p)
		}
		if write && c.T.ad && *e&f.dirty == 0 {
			if c.PML {
				if c.Index >= PMLEntries {
					c.PMLFull()
				}
				c.Log[c.Index] = gpa &^ (PageSize - 1)
				c.Index--
			}
			*e |= f.dirty
		}
		return leafAddr(*e, level) + gpa&(levelSize(level)-1), nil
	}
}

// Write32 stores v at gpa through the EPT.
func (c *SimCPU) Write32(gpa uint64, v uint32) error {
	hpa, err := c.Access(gpa, true)
	if err != nil || c.RAM == nil {
		return err
	}
	b, err := c.RAM.Bytes(hpa, 4)
	if err != nil {
		return err
	}
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return nil
}

// PMLIndex implements PMLIndex (the VMCS field of a real vCPU).
func (c *SimCPU) PMLIndex() (uint16, error) { return c.Index, nil }

// SetPMLIndex implements PMLIndex.
func (c *SimCPU) SetPMLIndex(i uint16) error { c.Index = i; return nil }
