package wire

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/core/engine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// Bounds of the Stream, on both sides.
const (
	// streamInFlight bounds the calls one Stream may have in progress on
	// the server; the server stops reading the stream until some finish.
	streamInFlight = 4096
	// maxCallsPerMsg and maxBytesPerMsg bound the calls or answers
	// coalesced into one message (a single larger one is sent alone).
	maxCallsPerMsg = 1024
	maxBytesPerMsg = 4 << 20
	// answerHeadroom is left below MaxMessageSize for the framing of an
	// answer; a larger answer is replaced by a TOO_LARGE error.
	answerHeadroom = 1 << 10
)

// Stream implements enginepb.EngineServer: it runs each call of each
// message in its own goroutine (at most streamInFlight at a time), with a
// context derived from the stream's (so that the stream's end cancels
// them) and bounded by the call's timeout, and sends the answers as they
// come, coalescing those that are ready into one message.
//
// A Stream whose metadata names its client and epoch fences off that
// client's older Streams, and is refused if a newer one has been seen (see
// fence.go).
func (s *Server) Stream(stream grpc.BidiStreamingServer[enginepb.StreamRequest, enginepb.StreamResponse]) error {
	ctx, cancelAll := context.WithCancel(stream.Context())
	defer cancelAll()
	var fs *fencedStream
	if client, epoch, ok := streamIdentity(ctx); ok {
		if fs, ok = s.order.openStream(client, epoch, cancelAll); !ok {
			return ToStatus(fmt.Errorf("%w: stream %d of this client comes after a newer one, and runs nothing", engine.ErrUnavailable, epoch))
		}
		defer s.order.closeStream(fs)
	}
	answers := make(chan *enginepb.StreamAnswer, 1024)
	sem := make(chan struct{}, streamInFlight)
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	senderDone := make(chan struct{})

	// cancels holds the cancel function of each call in progress, by id.
	var mu sync.Mutex
	cancels := make(map[uint64]*context.CancelFunc)

	go func() {
		defer close(senderDone)
		for a := range answers {
			msg := &enginepb.StreamResponse{Answers: []*enginepb.StreamAnswer{a}}
			size := proto.Size(a)
		more:
			for len(msg.Answers) < maxCallsPerMsg && size < maxBytesPerMsg {
				select {
				case a2, ok := <-answers:
					if !ok {
						break more
					}
					n := proto.Size(a2)
					if size+n > maxBytesPerMsg {
						if err := stream.Send(msg); err != nil {
							s.drainAfter(err, sendErr, answers)
							return
						}
						msg, size = &enginepb.StreamResponse{}, 0
					}
					msg.Answers = append(msg.Answers, a2)
					size += n
				default:
					break more
				}
			}
			if err := stream.Send(msg); err != nil {
				s.drainAfter(err, sendErr, answers)
				return
			}
		}
	}()

	finish := func(err error) error {
		wg.Wait()
		close(answers)
		<-senderDone
		select {
		case e := <-sendErr:
			return e
		default:
		}
		return err
	}

	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return finish(nil)
		}
		if err != nil {
			return finish(err)
		}
		for _, c := range req.GetCalls() {
			id := c.GetId()
			if _, ok := c.GetCall().(*enginepb.StreamCall_Cancel); ok {
				mu.Lock()
				cancel := cancels[id]
				mu.Unlock()
				if cancel != nil {
					(*cancel)()
				}
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return finish(ctx.Err())
			}
			var cctx context.Context
			var cancel context.CancelFunc
			if t := c.GetTimeoutNanos(); t > 0 {
				cctx, cancel = context.WithTimeout(ctx, time.Duration(t))
			} else {
				cctx, cancel = context.WithCancel(ctx)
			}
			mu.Lock()
			if old := cancels[id]; old != nil {
				(*old)() // a client reusing an id in progress: the old call loses
			}
			token := &cancel
			cancels[id] = token
			mu.Unlock()
			var t *ticket
			admitted := true
			if _, ok := c.GetCall().(*enginepb.StreamCall_Apply); ok {
				// In the order of arrival, before the call's goroutine runs.
				t, admitted = s.order.admit(fs, c.GetApply().GetWrites())
			} else {
				admitted = !fs.isFenced()
			}
			wg.Add(1)
			go func(c *enginepb.StreamCall) {
				defer wg.Done()
				defer func() { <-sem }()
				var a *enginepb.StreamAnswer
				if admitted {
					a = s.streamOne(cctx, c, t)
				} else {
					a = &enginepb.StreamAnswer{Id: c.GetId(), Answer: &enginepb.StreamAnswer_Error{Error: toStreamError(errFenced)}}
				}
				mu.Lock()
				// Forget the cancel function unless a later call took the id.
				if cancels[id] == token {
					delete(cancels, id)
				}
				mu.Unlock()
				cancel()
				answers <- a
			}(c)
		}
	}
}

// errFenced answers the calls read from a Stream after a newer Stream of
// its client fenced it off: they never run.
var errFenced = fmt.Errorf("%w: a newer stream of this client has superseded the call's stream; the call did not run", engine.ErrUnavailable)

// drainAfter records a send error and keeps draining answers so that
// handlers never block.
func (s *Server) drainAfter(err error, sendErr chan<- error, answers <-chan *enginepb.StreamAnswer) {
	select {
	case sendErr <- err:
	default:
	}
	for range answers {
	}
}

// streamOne runs one call of the Stream and returns its answer; t is an
// Apply's place in s.order.
func (s *Server) streamOne(ctx context.Context, c *enginepb.StreamCall, t *ticket) *enginepb.StreamAnswer {
	a := &enginepb.StreamAnswer{Id: c.GetId()}
	var err error
	switch call := c.GetCall().(type) {
	case *enginepb.StreamCall_Read:
		var resp *enginepb.ReadResponse
		if resp, err = s.read(ctx, call.Read); err == nil {
			a.Answer = &enginepb.StreamAnswer_Read{Read: resp}
		}
	case *enginepb.StreamCall_Apply:
		var resp *enginepb.ApplyResponse
		if resp, err = s.apply(ctx, call.Apply, t); err == nil {
			a.Answer = &enginepb.StreamAnswer_Apply{Apply: resp}
		}
	default:
		err = fmt.Errorf("%w: stream call %d has no known request", engine.ErrInvalidArgument, c.GetId())
	}
	if err == nil {
		err = s.answerFits(proto.Size(a), a.GetApply())
	}
	if err != nil {
		a.Answer = &enginepb.StreamAnswer_Error{Error: toStreamError(err)}
	}
	return a
}
