package ftmirror

import "github.com/doppel-ft/doppel/ftmirror/wire"

// Guest input forwarding. Input the primary receives for the guest after
// a checkpoint is not in that checkpoint; if the primary dies before the
// next one, that input is lost with it. For a network that is a dropped
// frame, which the guest's protocols recover from, but slowly: a lost
// acknowledgement from the outside costs the restored guest a
// retransmission timeout (200 ms or more in Linux) before its stream
// moves again. So the primary forwards each input record as it arrives,
// in an INPUT frame on the session, and the secondary hands the records
// to Config.Input. What a record holds is the caller's business: doppel
// sends a received frame with the guest NIC's receive sequence number,
// and a secondary that takes over gives the restored NIC the frames
// numbered above the checkpoint's (ft/vmguest, virtionet's RxSeq).
//
// Forwarding never blocks the guest: records wait in a queue bounded in
// records and bytes that one goroutine per session writes to the link,
// and a record that finds the queue full is dropped and counted, as a
// loaded switch drops a frame. On the link INPUT frames take turns with
// the checkpoint's, so a burst of input delays a checkpoint by at most
// the queue's bytes. Without a session nothing is forwarded.

// InputQueue and InputQueueBytes bound the INPUT records waiting for the
// link.
const (
	InputQueue      = 512
	InputQueueBytes = 1 << 20
)

// Input forwards the input record b to the current secondary, if there
// is one. It never blocks. Input keeps b: the caller must not change it.
func (p *Primary) Input(b []byte) {
	ps := p.input.Load()
	if ps == nil {
		return
	}
	if ps.inputBytes.Add(int64(len(b))) > InputQueueBytes {
		ps.inputBytes.Add(-int64(len(b)))
		p.inputsDropped.Add(1)
		return
	}
	select {
	case ps.inputs <- b:
	default:
		ps.inputBytes.Add(-int64(len(b)))
		p.inputsDropped.Add(1)
	}
}

// Inputs returns how many input records went to a secondary and how many
// were dropped because the link was behind.
func (p *Primary) Inputs() (sent, dropped uint64) {
	return p.inputsSent.Load(), p.inputsDropped.Load()
}

// startInput makes ps the session input is forwarded on.
func (ps *pSession) startInput() {
	ps.inputs = make(chan []byte, InputQueue)
	ps.p.input.Store(ps)
	go ps.inputSender()
}

// stopInput ends forwarding on ps (the sender stops with the session);
// records still queued count as dropped.
func (ps *pSession) stopInput() {
	ps.p.input.CompareAndSwap(ps, nil)
	for {
		select {
		case <-ps.inputs:
			ps.p.inputsDropped.Add(1)
		default:
			return
		}
	}
}

// inputSender writes queued records to the link until the session ends.
func (ps *pSession) inputSender() {
	for {
		select {
		case b := <-ps.inputs:
			ps.inputBytes.Add(-int64(len(b)))
			if err := ps.send(wire.TInput, 0, b); err != nil {
				ps.p.inputsDropped.Add(1)
				return
			}
			ps.p.inputsSent.Add(1)
		case <-ps.done:
			return
		}
	}
}
