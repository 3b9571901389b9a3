package pit

// channel is one 8254 counter.
type channel struct {
	mode, rw uint8
	bcd      bool
	reload   uint32 // the count register: 1-65536 (a written 0 is 65536)
	loaded   bool   // a count was written since the control word
	gate     bool
	running  bool // counting (modes 1 and 5: triggered)
	// Elapsed input clocks since the count was loaded or the counter
	// retriggered: paused + ticks(now - runStart) while running.
	runStart int64
	paused   uint64
	seen     uint64 // elapsed at the last update (counter 0's edges)
	out      bool   // OUT as last driven on the line (counter 0)

	writeMSB      bool  // LSB-then-MSB: the next write is the MSB
	lsb           uint8 // the LSB written first
	readMSB       bool  // LSB-then-MSB: the next read is the MSB
	latched       bool
	latch         uint16
	statusLatched bool
	status        uint8
	nullCount     bool
}

func (c *channel) elapsed(now int64) uint64 {
	if !c.running {
		return c.paused
	}
	return c.paused + ticks(now-c.runStart)
}

func (c *channel) start(now int64) {
	c.running, c.runStart, c.paused, c.seen = true, now, 0, 0
}

func (c *channel) pause(now int64) {
	c.paused = c.elapsed(now)
	c.running = false
}

func (c *channel) resume(now int64) {
	c.running, c.runStart = true, now
}

// program handles a control word for this counter.
func (c *channel) program(rw, mode uint8, bcd bool) {
	if mode > 5 {
		mode -= 4 // 6 and 7 are modes 2 and 3 (figure 7)
	}
	c.rw, c.mode, c.bcd = rw, mode, bcd
	c.loaded, c.running = false, false
	c.paused, c.seen = 0, 0
	c.writeMSB, c.readMSB = false, false
	c.latched, c.statusLatched = false, false
	c.nullCount = true
}

// load takes a new count and starts counting as the mode and gate say.
func (c *channel) load(now int64, v uint16) {
	c.reload = uint32(v)
	if v == 0 {
		c.reload = 0x10000
	}
	c.loaded, c.nullCount = true, false
	switch c.mode {
	case 1, 5:
		c.running, c.paused, c.seen = false, 0, 0 // wait for a gate trigger
	default:
		c.start(now)
		if !c.gate {
			c.pause(now)
		}
	}
}

func (c *channel) write(now int64, v uint8) {
	switch c.rw {
	case RWLSB:
		c.load(now, uint16(v))
	case RWMSB:
		c.load(now, uint16(v)<<8)
	case RWLSBMSB:
		if !c.writeMSB {
			c.lsb, c.writeMSB = v, true
			if c.mode == 0 && c.loaded {
				c.pause(now) // writing the first byte stops mode 0 counting
			}
			return
		}
		c.writeMSB = false
		c.load(now, uint16(v)<<8|uint16(c.lsb))
	}
}

func (c *channel) setGate(now int64, high bool) {
	if high == c.gate {
		return
	}
	c.gate = high
	if !c.loaded {
		return
	}
	switch c.mode {
	case 0, 4:
		if high {
			c.resume(now)
		} else {
			c.pause(now)
		}
	case 1, 5:
		if high {
			c.start(now) // a rising gate triggers
		}
	case 2, 3:
		if high {
			c.start(now) // a rising gate reloads
		} else {
			c.pause(now)
		}
	}
}

// output is OUT after n elapsed clocks.
func (c *channel) output(n uint64) bool {
	if !c.loaded {
		return c.mode != 0
	}
	N := uint64(c.reload)
	switch c.mode {
	case 0:
		return n >= N
	case 1:
		return !c.running && c.paused == 0 || n >= N
	case 2:
		return !c.running || N < 2 || n%N != N-1
	case 3:
		return !c.running || n%N < (N+1)/2
	default: // 4, 5: low for the one clock at terminal count
		return !c.running && c.paused == 0 && c.mode == 5 || n != N
	}
}

// rose reports a rising edge of OUT after clock from and up to clock to.
func (c *channel) rose(from, to uint64) bool {
	if !c.loaded || to <= from {
		return false
	}
	N := uint64(c.reload)
	switch c.mode {
	case 2, 3:
		return to/N > from/N
	case 4, 5:
		return from <= N && to > N
	}
	return false // modes 0 and 1 rise once and stay high: the level shows it
}

// nextRise returns the clock of the next rising edge of OUT after from.
func (c *channel) nextRise(from uint64) (uint64, bool) {
	if !c.loaded || !c.running {
		return 0, false
	}
	N := uint64(c.reload)
	switch c.mode {
	case 0, 1:
		return N, from < N
	case 2, 3:
		return (from/N + 1) * N, true
	default:
		return N + 1, from <= N
	}
}

// count is the counting element after n clocks.
func (c *channel) count(n uint64) uint16 {
	N := uint64(c.reload)
	if !c.loaded {
		return uint16(N)
	}
	switch c.mode {
	case 2:
		return uint16(N - n%N)
	case 3:
		return uint16((N - (2*(n%N))%N) &^ 1)
	}
	return uint16(N - n)
}

func (c *channel) latchCount(now int64) {
	if !c.latched { // a second latch before the read is ignored
		c.latched = true
		c.latch = c.count(c.elapsed(now))
	}
}

func (c *channel) statusByte(now int64) uint8 {
	s := c.rw<<cwRWShift | c.mode<<cwModeShift
	if c.bcd {
		s |= cwBCD
	}
	if c.output(c.elapsed(now)) {
		s |= StatusOut
	}
	if c.nullCount {
		s |= StatusNullCount
	}
	return s
}

func (c *channel) read(now int64) uint8 {
	if c.statusLatched {
		c.statusLatched = false
		return c.status
	}
	v := c.count(c.elapsed(now))
	if c.latched {
		v = c.latch
	}
	var b uint8
	switch c.rw {
	case RWLSB:
		b = uint8(v)
		c.latched = false
	case RWMSB:
		b = uint8(v >> 8)
		c.latched = false
	default:
		if c.readMSB {
			b = uint8(v >> 8)
			c.latched = false
		} else {
			b = uint8(v)
		}
		c.readMSB = !c.readMSB
	}
	return b
}
