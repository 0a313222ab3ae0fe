package wire

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/core/engine"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// Scan page defaults and caps, used when the client leaves the page size to
// the server or asks for more than the cap.
const (
	defaultPageEntries = 1024
	maxPageEntries     = 64 << 10
	defaultPageBytes   = 1 << 20
	maxPageBytes       = 64 << 20
)

// ServerOption configures NewServer.
type ServerOption func(*Server)

// WithLogger makes the server log recovered panics (with their stack) to l.
// The default discards them; the panic is returned to the caller as an
// INTERNAL error either way.
func WithLogger(l *slog.Logger) ServerOption {
	return func(s *Server) {
		if l != nil {
			s.log = l
		}
	}
}

// Server is the engine protocol's gRPC service over one engine.Engine. It
// is safe for concurrent use; register it on a grpc.Server created with
// ServerOptions.
type Server struct {
	enginepb.UnimplementedEngineServer
	e   engine.Engine
	log *slog.Logger
	// maxAnswer is the largest Read or Apply answer sent, in bytes: the
	// message limit less room for framing (lowered by tests).
	maxAnswer int
	// order keeps Applies of the same keys in their order of arrival.
	order applyOrder
}

var _ enginepb.EngineServer = (*Server)(nil)

// NewServer returns the gRPC service for e. Every call runs e's method with
// the call's context (so a client's deadline or cancellation reaches the
// engine), translates errors with ToStatus, and recovers a panic in e into
// an INTERNAL error instead of crashing the process. A request from a
// client that declares another protocol version than engine.ProtocolVersion
// is refused with reason PROTOCOL_MISMATCH. The Close call closes e; the
// server does not otherwise own e.
func NewServer(e engine.Engine, opts ...ServerOption) *Server {
	s := &Server{e: e, log: slog.New(slog.DiscardHandler), maxAnswer: MaxMessageSize - answerHeadroom}
	for _, o := range opts {
		o(s)
	}
	return s
}

// recoverInto turns a panic in the engine into an INTERNAL status in *err.
func (s *Server) recoverInto(method string, err *error) {
	if r := recover(); r != nil {
		s.log.Error("engine panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = ToStatus(fmt.Errorf("%w: engine panicked in %s: %v", engine.ErrInternal, method, r))
	}
}

// recoverErr turns a panic in the engine into an ErrInternal error in *err.
func (s *Server) recoverErr(method string, err *error) {
	if r := recover(); r != nil {
		s.log.Error("engine panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = fmt.Errorf("%w: engine panicked in %s: %v", engine.ErrInternal, method, r)
	}
}

func checkProtocol(v uint32) error {
	return ToStatus(protocolErr(v))
}

func protocolErr(v uint32) error {
	if v != 0 && v != engine.ProtocolVersion {
		return fmt.Errorf("%w: client speaks protocol %d, this engine speaks %d", ErrProtocolMismatch, v, engine.ProtocolVersion)
	}
	return nil
}

// Describe implements enginepb.EngineServer: the handshake.
func (s *Server) Describe(_ context.Context, req *enginepb.DescribeRequest) (resp *enginepb.DescribeResponse, err error) {
	defer s.recoverInto("Describe", &err)
	if err := checkProtocol(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	return &enginepb.DescribeResponse{
		ProtocolVersion: engine.ProtocolVersion,
		Description:     descriptionToPB(s.e.Describe()),
	}, nil
}

// Read implements enginepb.EngineServer.
func (s *Server) Read(ctx context.Context, req *enginepb.ReadRequest) (*enginepb.ReadResponse, error) {
	resp, err := s.read(ctx, req)
	if err == nil {
		err = s.answerFits(proto.Size(resp), nil)
	}
	if err != nil {
		return nil, ToStatus(err)
	}
	return resp, nil
}

// read is Read with the contract's errors (a panic becomes ErrInternal);
// the unary call and the Stream share it.
func (s *Server) read(ctx context.Context, req *enginepb.ReadRequest) (resp *enginepb.ReadResponse, err error) {
	defer s.recoverErr("Read", &err)
	if err := protocolErr(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	entries, err := s.e.Read(ctx, req.GetKeys())
	if err != nil {
		return nil, err
	}
	out := make([]*enginepb.Entry, len(entries))
	for i, e := range entries {
		out[i] = entryToPB(e)
	}
	return &enginepb.ReadResponse{Entries: out}, nil
}

// Apply implements enginepb.EngineServer.
func (s *Server) Apply(ctx context.Context, req *enginepb.ApplyRequest) (*enginepb.ApplyResponse, error) {
	t, _ := s.order.admit(nil, req.GetWrites()) // a unary call is never fenced
	resp, err := s.apply(ctx, req, t)
	if err == nil {
		err = s.answerFits(proto.Size(resp), resp)
	}
	if err != nil {
		return nil, ToStatus(err)
	}
	return resp, nil
}

// answerFits returns nil when an answer of n bytes can be sent, and
// otherwise the error to send instead. For an Apply answer (applied not
// nil) whose writes changed something, that error must not be
// ErrTooLarge, which the contract reserves for calls that applied nothing
// (a caller may then retry the writes, one by one): the writes were
// applied, and only their results are lost.
func (s *Server) answerFits(n int, applied *enginepb.ApplyResponse) error {
	if n <= s.maxAnswer {
		return nil
	}
	if applied != nil {
		for _, r := range applied.GetResults() {
			if r.GetApplied() {
				return fmt.Errorf("%w: the writes were applied, but their results (%d bytes) exceed the %d-byte message limit", engine.ErrInternal, n, MaxMessageSize)
			}
		}
	}
	return fmt.Errorf("%w: answer of %d bytes exceeds the %d-byte message limit (nothing was changed)", engine.ErrTooLarge, n, MaxMessageSize)
}

// apply is Apply with the contract's errors; the unary call and the Stream
// share it. t is the call's place in s.order, admitted on arrival: apply
// waits for its turn (see applyOrder) and finishes it.
func (s *Server) apply(ctx context.Context, req *enginepb.ApplyRequest, t *ticket) (resp *enginepb.ApplyResponse, err error) {
	defer s.order.finish(t)
	defer s.recoverErr("Apply", &err)
	if err := protocolErr(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	writes, err := writesFromPB(req.GetWrites())
	if err != nil {
		return nil, err
	}
	if err := t.wait(ctx); err != nil {
		return nil, err
	}
	// A call whose context has ended never starts: nor, so, do the calls
	// of a Stream the client has reset that are read after the reset (see
	// applyOrder).
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	results, err := s.e.Apply(ctx, writes, engine.ApplyOptions{Atomic: req.GetAtomic(), NoSync: req.GetNoSync()})
	if err != nil {
		return nil, err
	}
	return &enginepb.ApplyResponse{Results: resultsToPB(results)}, nil
}

// Scan implements enginepb.EngineServer. It runs one engine Scan (one
// snapshot) and sends its entries in pages; a client that stops reading
// holds the scan back through gRPC flow control, and one that goes away
// ends it.
func (s *Server) Scan(req *enginepb.ScanRequest, stream grpc.ServerStreamingServer[enginepb.ScanResponse]) (err error) {
	defer s.recoverInto("Scan", &err)
	if err := checkProtocol(req.GetProtocolVersion()); err != nil {
		return err
	}
	limit := req.GetLimit()
	if limit < 0 || uint64(limit) > uint64(maxInt) {
		return ToStatus(fmt.Errorf("%w: scan limit %d", engine.ErrInvalidArgument, limit))
	}
	pageEntries := int(req.GetPageEntries())
	if pageEntries <= 0 {
		pageEntries = defaultPageEntries
	}
	pageEntries = min(pageEntries, maxPageEntries)
	pageBytes := int(req.GetPageBytes())
	if pageBytes <= 0 {
		pageBytes = defaultPageBytes
	}
	pageBytes = min(pageBytes, maxPageBytes)

	opts := engine.ScanOptions{
		Start:    req.GetStart(),
		End:      req.GetEnd(),
		Reverse:  req.GetReverse(),
		Limit:    int(limit),
		KeysOnly: req.GetKeysOnly(),
	}
	var page []*enginepb.Entry
	size := 0
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		err := stream.Send(&enginepb.ScanResponse{Entries: page})
		page, size = nil, 0
		return err
	}
	// sendErr remembers a failure to send, so that it is reported as the
	// transport error it is rather than as the engine's.
	var sendErr error
	err = s.e.Scan(stream.Context(), opts, func(e engine.Entry) error {
		n := len(e.Key) + len(e.Value)
		if len(page) > 0 && (len(page) >= pageEntries || size+n > pageBytes) {
			if err := flush(); err != nil {
				sendErr = err
				return err
			}
		}
		page = append(page, entryToPB(e))
		size += n
		return nil
	})
	if sendErr != nil {
		return sendErr
	}
	if err != nil {
		return ToStatus(err)
	}
	return flush()
}

// Close implements enginepb.EngineServer: it closes the engine.
func (s *Server) Close(context.Context, *enginepb.CloseRequest) (resp *enginepb.CloseResponse, err error) {
	defer s.recoverInto("Close", &err)
	if err := s.e.Close(); err != nil {
		return nil, ToStatus(err)
	}
	return &enginepb.CloseResponse{}, nil
}
