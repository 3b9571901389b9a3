package serial

// State is the guest-visible state of a Serial, for checkpoints.
type State struct {
	DLL, DLM, IER, IIR, LCR, MCR, LSR, MSR, SCR, FCR byte
	RX                                               []byte
}

// State returns a copy of the UART's state.
func (s *Serial) State() State {
	return State{s.dll, s.dlm, s.ier, s.iir, s.lcr, s.mcr, s.lsr, s.msr, s.scr, s.fcr, append([]byte(nil), s.rx...)}
}

// FromState restores a state from State.
func (s *Serial) FromState(st State) {
	s.dll, s.dlm, s.ier, s.iir, s.lcr = st.DLL, st.DLM, st.IER, st.IIR, st.LCR
	s.mcr, s.lsr, s.msr, s.scr, s.fcr = st.MCR, st.LSR, st.MSR, st.SCR, st.FCR
	s.rx = append(s.rx[:0], st.RX...)
	if len(s.rx) > FIFOSize {
		s.rx = s.rx[:FIFOSize]
	}
}
