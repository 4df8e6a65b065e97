package sftp

import (
	"cmp"
	"encoding"
	"slices"
	"sync"
)

// The goal of the packetManager is to keep the outgoing packets in the same
// order as the incoming as is requires by section 7 of the RFC.

type packetManager struct {
	// mu guards incoming and outgoing, and is held while the responses
	// that are ready in order are sent (upgate fork: upstream kept them in
	// a controller goroutine, two more goroutine hand-offs per request).
	mu          sync.Mutex
	incoming    orderedPackets
	outgoing    orderedPackets
	sender      packetSender // connection object
	working     *sync.WaitGroup
	packetCount uint32
	// it is not nil if the allocator is enabled
	alloc *allocator
	// sequential, if non-nil, picks the reads and writes that must be
	// served in the order they arrived, by the worker that serves every
	// other packet in order, instead of concurrently (upgate fork: the
	// writes on a handle opened with APPEND, which OpenSSH appends in
	// arrival order whatever their offsets).
	sequential func(requestPacket) bool
	// inflight holds the reads and writes served concurrently, by order
	// id, until their responses are ready (guarded by mu): one that
	// overlaps an earlier one on the same handle, either of them a write,
	// waits for it, as OpenSSH's sftp-server serves them in the order
	// they came (upgate fork: two WRITEs of one range, pipelined as sshfs
	// sends them, landed in either order, and a READ after a WRITE could
	// miss it).
	inflight map[uint32]rwSpan
}

// rwSpan is the byte range a READ or WRITE covers on its handle, or,
// with cmd, any other request, served in order by the one worker: a READ
// or WRITE sent after it waits for it, as one sent before it is waited
// for (an FSETSTAT's truncation, then a WRITE; a WRITE on an APPEND
// handle, then a READ).
type rwSpan struct {
	handle     string
	start, end uint64 // end may wrap for offsets past 2^64-2^32: such a span conflicts with nothing, and the handler refuses it anyway
	write      bool
	cmd        bool
}

// rwSpanOf is the range of a READ or WRITE, and a cmd span for any
// other request.
func rwSpanOf(p requestPacket) rwSpan {
	switch p := p.(type) {
	case *sshFxpReadPacket:
		return rwSpan{handle: p.Handle, start: p.Offset, end: p.Offset + uint64(p.Len)}
	case *sshFxpWritePacket:
		return rwSpan{handle: p.Handle, start: p.Offset, end: p.Offset + uint64(len(p.Data)), write: true}
	}
	return rwSpan{cmd: true}
}

// conflicts reports whether a and b must be served in their order: one
// range of one handle, a write among them.
func (a rwSpan) conflicts(b rwSpan) bool {
	return a.cmd || b.cmd || a.handle == b.handle && (a.write || b.write) && a.start < b.end && b.start < a.end
}

type packetSender interface {
	sendPacket(encoding.BinaryMarshaler) error
}

func newPktMgr(sender packetSender) *packetManager {
	s := &packetManager{
		incoming: make([]orderedPacket, 0, SftpServerWorkerCount),
		outgoing: make([]orderedPacket, 0, SftpServerWorkerCount),
		sender:   sender,
		working:  &sync.WaitGroup{},
		inflight: map[uint32]rwSpan{},
	}
	return s
}

// // packet ordering
func (s *packetManager) newOrderID() uint32 {
	s.packetCount++
	return s.packetCount
}

// returns the next orderID without incrementing it.
// This is used before receiving a new packet, with the allocator enabled, to associate
// the slice allocated for the received packet with the orderID that will be used to mark
// the allocated slices for reuse once the request is served
func (s *packetManager) getNextOrderID() uint32 {
	return s.packetCount + 1
}

type orderedRequest struct {
	requestPacket
	orderid uint32
}

func (s *packetManager) newOrderedRequest(p requestPacket) orderedRequest {
	return orderedRequest{requestPacket: p, orderid: s.newOrderID()}
}
func (p orderedRequest) orderID() uint32 { return p.orderid }

type orderedResponse struct {
	responsePacket
	orderid uint32
}

func (s *packetManager) newOrderedResponse(p responsePacket, id uint32,
) orderedResponse {
	return orderedResponse{responsePacket: p, orderid: id}
}
func (p orderedResponse) orderID() uint32 { return p.orderid }

type orderedPacket interface {
	id() uint32
	orderID() uint32
}
type orderedPackets []orderedPacket

// // packet registry
// register incoming packets to be handled, in the order they arrived: one
// goroutine registers them, with increasing order ids, so incoming stays
// sorted as it grows (upgate fork: upstream sorted it on every packet)
func (s *packetManager) incomingPacket(pkt orderedRequest) {
	s.register(pkt, rwSpan{cmd: true})
}

// register is incomingPacket for a request whose span (rwSpan) is known:
// it is in flight until its response is ready.
func (s *packetManager) register(pkt orderedRequest, sp rwSpan) {
	s.working.Add(1)
	s.mu.Lock()
	debug("incoming id (oid): %v (%v)", pkt.id(), pkt.orderID())
	s.inflight[pkt.orderid] = sp
	s.incoming = append(s.incoming, pkt)
	s.mu.Unlock()
}

// conflicting reports whether sp must wait for a request in flight.
func (s *packetManager) conflicting(sp rwSpan) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.inflight {
		if in.conflicts(sp) {
			return true
		}
	}
	return false
}

// register outgoing packets as being ready, in order id order, and send
// those that are next
func (s *packetManager) readyPacket(pkt orderedResponse) {
	s.mu.Lock()
	delete(s.inflight, pkt.orderID())
	debug("outgoing id (oid): %v (%v)", pkt.id(), pkt.orderID())
	i, _ := slices.BinarySearchFunc(s.outgoing, pkt.orderID(), func(p orderedPacket, id uint32) int {
		return cmp.Compare(p.orderID(), id)
	})
	s.outgoing = slices.Insert(s.outgoing, i, orderedPacket(pkt))
	s.maybeSendPackets()
	s.mu.Unlock()
	s.working.Done()
}

// shut down packetManager: wait until current packets are processed
func (s *packetManager) close() {
	s.working.Wait()
}

// Passed a worker function, starts the workers and returns dispatch, which
// the goroutine reading the packets calls with each request in turn, and
// done, which it calls once it reads no more: the workers end once they have
// served what they were given. Keep process packet responses in the order
// they are received while maximizing throughput of file transfers.
// (upgate fork: upstream returned a channel to a router goroutine, one more
// goroutine hand-off per request.)
func (s *packetManager) workers(runWorker func(chan orderedRequest),
) (dispatch func(orderedRequest), done func()) {
	// multiple workers for faster read/writes
	rwChan := make(chan orderedRequest, SftpServerWorkerCount)
	for i := 0; i < SftpServerWorkerCount; i++ {
		runWorker(rwChan)
	}

	// single worker to enforce sequential processing of everything else
	cmdChan := make(chan orderedRequest)
	runWorker(cmdChan)

	dispatch = func(pkt orderedRequest) {
		switch pkt.requestPacket.(type) {
		case *sshFxpReadPacket, *sshFxpWritePacket:
			if s.sequential == nil || !s.sequential(pkt.requestPacket) {
				sp := rwSpanOf(pkt.requestPacket)
				if s.conflicting(sp) {
					// Rare (sequential transfers do not overlap):
					// wait for everything in flight, as before any
					// other request.
					s.working.Wait()
				}
				s.register(pkt, sp)
				rwChan <- pkt
				return
			}
			// to cmdChan, in order
		}
		// Every other request sees the effects of the reads and writes
		// sent before it, as with OpenSSH's sftp-server, which serves one
		// request at a time: a LSTAT after WRITEs answers their size
		// (sshfs caches what it gets), a SETSTAT of times follows them
		// (upgate fork: upstream waited only before CLOSE).
		// incomingPacket() call must occur after this.
		s.working.Wait()
		s.incomingPacket(pkt)
		// all non-RW use sequential cmdChan
		cmdChan <- pkt
	}
	done = func() {
		close(rwChan)
		close(cmdChan)
		s.close()
	}
	return dispatch, done
}

// send as many packets as are ready; s.mu is held
func (s *packetManager) maybeSendPackets() {
	for {
		if len(s.outgoing) == 0 || len(s.incoming) == 0 {
			debug("break! -- outgoing: %v; incoming: %v",
				len(s.outgoing), len(s.incoming))
			break
		}
		out := s.outgoing[0]
		in := s.incoming[0]
		// debug("incoming: %v", ids(s.incoming))
		// debug("outgoing: %v", ids(s.outgoing))
		if in.orderID() == out.orderID() {
			debug("Sending packet: %v", out.id())
			s.sender.sendPacket(out.(encoding.BinaryMarshaler))
			if s.alloc != nil {
				// mark for reuse the slices allocated for this request
				s.alloc.ReleasePages(in.orderID())
			}
			// pop off heads
			copy(s.incoming, s.incoming[1:])            // shift left
			s.incoming[len(s.incoming)-1] = nil         // clear last
			s.incoming = s.incoming[:len(s.incoming)-1] // remove last
			copy(s.outgoing, s.outgoing[1:])            // shift left
			s.outgoing[len(s.outgoing)-1] = nil         // clear last
			s.outgoing = s.outgoing[:len(s.outgoing)-1] // remove last
		} else {
			break
		}
	}
}

// func oids(o []orderedPacket) []uint32 {
// 	res := make([]uint32, 0, len(o))
// 	for _, v := range o {
// 		res = append(res, v.orderId())
// 	}
// 	return res
// }
// func ids(o []orderedPacket) []uint32 {
// 	res := make([]uint32, 0, len(o))
// 	for _, v := range o {
// 		res = append(res, v.id())
// 	}
// 	return res
// }
