package virtio

import (
	"encoding/binary"
	"fmt"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Queue is one split virtqueue as the device sees it: the configuration
// the driver wrote through the common configuration structure and the
// device's own ring positions. Its zero value is a reset queue; the
// device sets MaxSize (and Size, which starts at MaxSize, 4.1.4.3.1).
type Queue struct {
	MaxSize uint16
	Size    uint16
	Enabled bool
	Desc    uint64 // descriptor table
	Driver  uint64 // available ring
	Device  uint64 // used ring
	// LastAvail is the next available ring entry the device will take;
	// UsedIdx the next used ring entry it will fill (both free-running
	// modulo 2^16, 2.6.6 and 2.6.8).
	LastAvail uint16
	UsedIdx   uint16
}

// Reset puts the queue in its reset state (4.1.4.3.1: queue_size reads
// the maximum, queue_enable 0).
func (q *Queue) Reset() {
	*q = Queue{MaxSize: q.MaxSize, Size: q.MaxSize}
}

// Check reports whether the configuration can be enabled: a power-of-two
// size within the maximum and rings aligned as 2.6.2 requires. The error
// wraps ErrGuest.
func (q *Queue) Check() error {
	switch {
	case q.Size == 0 || q.Size&(q.Size-1) != 0 || q.Size > q.MaxSize:
		return fmt.Errorf("%w: queue size %d (maximum %d, a power of two)", ErrGuest, q.Size, q.MaxSize)
	case q.Desc%alignDesc != 0 || q.Driver%alignAvail != 0 || q.Device%alignUsed != 0:
		return fmt.Errorf("%w: misaligned rings desc %#x avail %#x used %#x", ErrGuest, q.Desc, q.Driver, q.Device)
	}
	return nil
}

// Save appends the queue to a device state: size, enabled, the three
// ring addresses, last avail and used indices (MaxSize is configuration).
func (q *Queue) Save(e *devices.Encoder) {
	e.U16(q.Size)
	e.Bool(q.Enabled)
	e.U64(q.Desc)
	e.U64(q.Driver)
	e.U64(q.Device)
	e.U16(q.LastAvail)
	e.U16(q.UsedIdx)
}

// Load reads what Save wrote into a queue with the same MaxSize,
// recording on d a size over the maximum or an enabled queue that could
// not have been enabled.
func (q *Queue) Load(d *devices.Decoder) Queue {
	n := Queue{MaxSize: q.MaxSize, Size: d.U16(), Enabled: d.Bool(), Desc: d.U64(), Driver: d.U64(),
		Device: d.U64(), LastAvail: d.U16(), UsedIdx: d.U16()}
	d.Check(n.Size <= n.MaxSize, "queue size %d over %d", n.Size, n.MaxSize)
	if n.Enabled && d.Err() == nil {
		d.Check(n.Check() == nil, "enabled queue with %v", n.Check())
	}
	return n
}

// Desc is one descriptor of a chain (2.6.5).
type Desc struct {
	Addr  uint64
	Len   uint32
	Write bool // device-writable
}

// Chain is a descriptor chain taken from the available ring.
type Chain struct {
	Head     uint16
	Descs    []Desc
	ReadLen  uint64 // total of the device-readable descriptors
	WriteLen uint64 // total of the device-writable descriptors
}

func (q *Queue) u16(mem GuestMemory, gpa uint64) (uint16, error) {
	var b [2]byte
	if err := mem.ReadAt(b[:], gpa); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrGuest, err)
	}
	return binary.LittleEndian.Uint16(b[:]), nil
}

// Avail returns how many chains the driver has made available and not
// yet taken. More than the queue size is a corrupt index (ErrGuest).
func (q *Queue) Avail(mem GuestMemory) (uint16, error) {
	idx, err := q.u16(mem, q.Driver+2)
	if err != nil {
		return 0, fmt.Errorf("available ring index: %w", err)
	}
	n := idx - q.LastAvail
	if n > q.Size {
		return 0, fmt.Errorf("%w: available index %d is %d entries past %d, queue of %d", ErrGuest, idx, n, q.LastAvail, q.Size)
	}
	return n, nil
}

// NoInterrupt reports the driver's VIRTQ_AVAIL_F_NO_INTERRUPT hint
// (2.6.7): the device should not interrupt after using buffers.
func (q *Queue) NoInterrupt(mem GuestMemory) bool {
	f, err := q.u16(mem, q.Driver)
	return err == nil && f&AvailFNoInterrupt != 0
}

// Pop takes the next available chain (the caller checked Avail) into
// c, reusing c.Descs. The walk is bounded: at most Size descriptors
// (more means a loop, 2.6.5.3.1 forbids chains longer than the queue),
// at most maxBytes in total, no indirect descriptors (never offered), no
// device-readable descriptor after a device-writable one (2.6.4.2).
// Every refusal wraps ErrGuest and leaves LastAvail unchanged.
func (q *Queue) Pop(mem GuestMemory, maxBytes uint64, c *Chain) error {
	head, err := q.u16(mem, q.Driver+4+2*uint64(q.LastAvail%q.Size))
	if err != nil {
		return fmt.Errorf("available ring entry: %w", err)
	}
	*c = Chain{Head: head, Descs: c.Descs[:0]}
	i := head
	for n := 0; ; n++ {
		if i >= q.Size {
			return fmt.Errorf("%w: descriptor index %d in a queue of %d", ErrGuest, i, q.Size)
		}
		if n == int(q.Size) {
			return fmt.Errorf("%w: chain from %d longer than the queue (a loop)", ErrGuest, head)
		}
		d, flags, next, err := q.desc(mem, i)
		if err != nil {
			return err
		}
		if !d.Write && c.WriteLen > 0 {
			return fmt.Errorf("%w: readable descriptor %d after a writable one", ErrGuest, i)
		}
		if d.Write {
			c.WriteLen += uint64(d.Len)
		} else {
			c.ReadLen += uint64(d.Len)
		}
		if c.ReadLen+c.WriteLen > maxBytes {
			return fmt.Errorf("%w: chain from %d over %d bytes", ErrGuest, head, maxBytes)
		}
		c.Descs = append(c.Descs, d)
		if flags&DescFNext == 0 {
			break
		}
		i = next
	}
	q.LastAvail++
	return nil
}

// desc reads descriptor i, refusing an indirect one (never offered) and
// a buffer that wraps the address space.
func (q *Queue) desc(mem GuestMemory, i uint16) (Desc, uint16, uint16, error) {
	var raw [descSize]byte
	if err := mem.ReadAt(raw[:], q.Desc+descSize*uint64(i)); err != nil {
		return Desc{}, 0, 0, fmt.Errorf("%w: descriptor %d: %w", ErrGuest, i, err)
	}
	d := Desc{Addr: binary.LittleEndian.Uint64(raw[0:]), Len: binary.LittleEndian.Uint32(raw[8:])}
	flags := binary.LittleEndian.Uint16(raw[12:])
	d.Write = flags&DescFWrite != 0
	switch {
	case flags&DescFIndirect != 0:
		return d, 0, 0, fmt.Errorf("%w: indirect descriptor %d, not negotiated", ErrGuest, i)
	case d.Addr+uint64(d.Len) < d.Addr:
		return d, 0, 0, fmt.Errorf("%w: descriptor %d wraps the address space", ErrGuest, i)
	}
	return d, flags, binary.LittleEndian.Uint16(raw[14:]), nil
}

// Gather appends the device-readable bytes of c to dst.
func Gather(mem GuestMemory, c *Chain, dst []byte) ([]byte, error) {
	for _, d := range c.Descs {
		if d.Write {
			break
		}
		n := len(dst)
		dst = append(dst, make([]byte, d.Len)...)
		if err := mem.ReadAt(dst[n:], d.Addr); err != nil {
			return dst[:n], fmt.Errorf("%w: reading a buffer: %w", ErrGuest, err)
		}
	}
	return dst, nil
}

// Scatter writes src into the device-writable descriptors of c, in
// order, and returns how many bytes it wrote (at most WriteLen).
func Scatter(mem GuestMemory, c *Chain, src []byte) (int, error) {
	done := 0
	for _, d := range c.Descs {
		if !d.Write || done == len(src) {
			continue
		}
		n := min(uint64(d.Len), uint64(len(src)-done))
		if err := mem.WriteAt(src[done:done+int(n)], d.Addr); err != nil {
			return done, fmt.Errorf("%w: writing a buffer: %w", ErrGuest, err)
		}
		done += int(n)
	}
	return done, nil
}

// PutUsed fills the next used ring entry with chain head and the bytes
// written (2.6.8) without publishing it: Publish does, so that the
// buffers of one mergeable packet appear together.
func (q *Queue) PutUsed(mem GuestMemory, head uint16, written uint32) error {
	var e [usedElemSize]byte
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	if err := mem.WriteAt(e[:], q.Device+4+usedElemSize*uint64(q.UsedIdx%q.Size)); err != nil {
		return fmt.Errorf("%w: used ring entry: %w", ErrGuest, err)
	}
	q.UsedIdx++
	return nil
}

// Publish writes the used ring index, after the entries it covers.
func (q *Queue) Publish(mem GuestMemory) error {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], q.UsedIdx)
	if err := mem.WriteAt(b[:], q.Device+2); err != nil {
		return fmt.Errorf("%w: used ring index: %w", ErrGuest, err)
	}
	return nil
}
