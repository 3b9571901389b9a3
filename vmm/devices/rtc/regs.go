package rtc

import "time"

// PortIn implements devices.PortDevice at Port.
func (r *RTC) PortIn(offset uint16, size int) uint32 {
	if offset != 1 {
		return 0xFF // the index register is write-only
	}
	t := r.clock.Nanotime()
	r.advance(t)
	v := r.read(t)
	r.drive()
	return uint32(v)
}

// PortOut implements devices.PortDevice at Port.
func (r *RTC) PortOut(offset uint16, size int, value uint32) {
	v := uint8(value)
	if offset == 0 {
		r.index = v & indexMask
		r.nmi = v&IndexNMIDisable != 0
		return
	}
	if offset != 1 {
		return
	}
	t := r.clock.Nanotime()
	r.advance(t)
	r.write(t, v)
	r.drive()
}

func (r *RTC) read(t int64) uint8 {
	switch i := r.index; i {
	case RegA:
		v := r.ram[RegA]
		if r.updating() && (t-r.upd)%second >= second-uipHold {
			v |= AUIP
		}
		return v
	case RegC:
		v := r.ram[RegC]
		if r.irqf() {
			v |= CIRQF
		}
		r.ram[RegC] = 0
		return v
	case RegD:
		return DVRT
	case RegSeconds, RegMinutes, RegHours, RegDayOfWeek, RegDayOfMonth, RegMonth, RegYear, RegCentury:
		return r.timeField(time.Unix(r.now(t), 0).UTC(), i)
	default:
		return r.ram[i]
	}
}

func (r *RTC) timeField(tm time.Time, i uint8) uint8 {
	switch i {
	case RegSeconds:
		return r.encode(tm.Second())
	case RegMinutes:
		return r.encode(tm.Minute())
	case RegHours:
		return r.encodeHour(tm.Hour())
	case RegDayOfWeek:
		return r.encode(int(tm.Weekday()) + 1) // Sunday is 1
	case RegDayOfMonth:
		return r.encode(tm.Day())
	case RegMonth:
		return r.encode(int(tm.Month()))
	case RegYear:
		return r.encode(tm.Year() % 100)
	default: // RegCentury
		return r.encode(tm.Year() / 100)
	}
}

func (r *RTC) write(t int64, v uint8) {
	switch i := r.index; i {
	case RegA:
		wasDividing := r.dividing()
		r.freezeIfStopping(t, func() { r.ram[RegA] = v &^ AUIP })
		if !wasDividing && r.dividing() {
			r.div = t
			if r.updating() {
				r.upd = t - second/2 // the first update comes 500 ms later
			}
		}
	case RegB:
		if v&BSET != 0 {
			v &^= BUIE // setting SET clears UIE
		}
		r.freezeIfStopping(t, func() { r.ram[RegB] = v })
	case RegC, RegD:
		// read-only
	case RegSeconds, RegMinutes, RegHours, RegDayOfMonth, RegMonth, RegYear, RegCentury:
		r.setTimeField(t, i, v)
	case RegDayOfWeek:
		// follows the date
	default:
		r.ram[i] = v
	}
}

// freezeIfStopping applies change to A or B, freezing the time if updates
// stop and restarting them (a full second to the first update) if they
// resume.
func (r *RTC) freezeIfStopping(t int64, change func()) {
	was := r.updating()
	cur := r.now(t)
	change()
	switch is := r.updating(); {
	case was && !is:
		r.secs = cur
	case !was && is:
		r.secs, r.upd = cur, t
	}
}

func (r *RTC) setTimeField(t int64, i, v uint8) {
	tm := time.Unix(r.now(t), 0).UTC()
	y, mo, d := tm.Date()
	h, mi, s := tm.Clock()
	switch i {
	case RegSeconds:
		s = r.decode(v)
	case RegMinutes:
		mi = r.decode(v)
	case RegHours:
		h = r.decodeHour(v)
	case RegDayOfMonth:
		d = r.decode(v)
	case RegMonth:
		mo = time.Month(r.decode(v))
	case RegYear:
		y = y/100*100 + r.decode(v)
	case RegCentury:
		y = r.decode(v)*100 + y%100
	}
	n := time.Date(y, mo, d, h, mi, s, 0, time.UTC).Unix()
	if r.updating() {
		n -= floorDiv(t-r.upd, second) // keep the update phase
	}
	r.secs = n
}

func (r *RTC) binary() bool { return r.ram[RegB]&BDM != 0 }

func (r *RTC) encode(n int) uint8 {
	if r.binary() {
		return uint8(n)
	}
	return uint8(n/10<<4 | n%10)
}

func (r *RTC) decode(v uint8) int {
	if r.binary() {
		return int(v)
	}
	return int(v>>4)*10 + int(v&0xF)
}

func (r *RTC) encodeHour(h int) uint8 {
	if r.ram[RegB]&B24 != 0 {
		return r.encode(h)
	}
	pm := h >= 12
	h %= 12
	if h == 0 {
		h = 12
	}
	v := r.encode(h)
	if pm {
		v |= 0x80
	}
	return v
}

func (r *RTC) decodeHour(v uint8) int {
	if r.ram[RegB]&B24 != 0 {
		return r.decode(v)
	}
	h := r.decode(v&0x7F) % 12
	if v&0x80 != 0 {
		h += 12
	}
	return h
}

// alarmBetween reports whether a second in (from, to] matches the alarm.
func (r *RTC) alarmBetween(from, to int64) bool {
	const day = 86400
	dc := func(v uint8) bool { return v&0xC0 == 0xC0 } // don't care
	sa, ma, ha := r.ram[RegSecondsAlarm], r.ram[RegMinutesAlarm], r.ram[RegHoursAlarm]
	ws, wm, wh := -1, -1, -1
	if !dc(sa) {
		ws = r.decode(sa)
	}
	if !dc(ma) {
		wm = r.decode(ma)
	}
	if !dc(ha) {
		wh = r.decodeHour(ha)
	}
	if to-from >= day { // every time of day passed: any valid alarm matched
		return ws < 60 && wm < 60 && wh < 24
	}
	for s := from + 1; s <= to; s++ {
		tod := s % day
		if tod < 0 {
			tod += day
		}
		if (ws < 0 || int64(ws) == tod%60) && (wm < 0 || int64(wm) == tod/60%60) && (wh < 0 || int64(wh) == tod/3600) {
			return true
		}
	}
	return false
}
