package wire

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/internal/streammux"
	enginepb "github.com/flaredb/flaredb/proto/enginepb/v1"
)

// Bounds on the calls a Client makes without a caller's context.
const (
	// describeTimeout bounds the handshake Describe makes when nothing is
	// cached yet.
	describeTimeout = 10 * time.Second
	// closeTimeout bounds the remote Close call.
	closeTimeout = time.Minute
)

// Client is the engine contract over a gRPC connection to a Server: it
// implements engine.Engine. It is safe for concurrent use.
//
// Byte slices passed to its methods are only read while the call is in
// progress (they are marshaled into the request); slices it returns come
// from freshly decoded responses and are owned by the caller.
//
// Errors come back as the contract's errors (see FromStatus): a server that
// is gone or unreachable gives engine.ErrUnavailable, a message beyond
// MaxMessageSize gives engine.ErrTooLarge (but an applied Apply whose
// answer is too large gives engine.ErrInternal, see the package doc), and a
// context that ends gives an error matching context.Canceled or
// context.DeadlineExceeded.
type Client struct {
	rpc enginepb.EngineClient

	// life guards closed, inflight and idle; idle, made by Close when
	// calls are in progress, is closed when inflight drops to zero.
	life     sync.Mutex
	closed   bool
	inflight int
	idle     chan struct{}

	// hs (capacity 1) serialises handshakes, each waiting for its turn
	// within its own context; desc holds the result.
	hs   chan struct{}
	desc *engine.Description
	mu   sync.RWMutex // guards desc

	// The Stream that carries Read and Apply: base is the context of its
	// sessions, canceled by Close; nextID numbers its calls; noStream is
	// set for good once the server turns out to lack the Stream method.
	mux        *streammux.Mux[*enginepb.StreamAnswer]
	base       context.Context
	baseCancel context.CancelFunc
	nextID     atomic.Uint64
	noStream   atomic.Bool
	// name (random) and epoch, the number of the last Stream opened,
	// identify each Stream to the server, so that a new one fences off
	// the old ones (see fence.go).
	name         string
	epoch        atomic.Uint64
	testHookSend func(calls int) // called with each message's size in calls
}

var _ engine.Engine = (*Client)(nil)

// NewClient returns the engine contract over conn, which must lead to a
// Server (for example a *grpc.ClientConn dialed with DialOptions). The
// Client does not own conn: closing the Client closes the remote engine
// but leaves conn open, for the caller to close.
//
// The handshake (Describe with engine.ProtocolVersion) happens on the first
// call, or eagerly with Handshake; its result is cached for Describe.
//
// Read and Apply travel on one long-lived Stream call, opened on first use:
// calls made concurrently are coalesced into shared messages and answered
// by id. When the stream breaks, the calls waiting on it fail with
// engine.ErrUnavailable and the next call opens a new one, which fences the
// old one off on the server: once the server has seen the new one, no call
// left on the old one that had not started runs (see the protocol's Stream
// method). Against a server
// without the Stream method (an older plugin) the Client falls back to one
// unary call per Read or Apply, for good.
func NewClient(conn grpc.ClientConnInterface) *Client {
	c := &Client{rpc: enginepb.NewEngineClient(conn), hs: make(chan struct{}, 1), name: rand.Text()}
	c.base, c.baseCancel = context.WithCancel(context.Background())
	c.mux = c.newMux()
	return c
}

func (c *Client) enter() error {
	c.life.Lock()
	defer c.life.Unlock()
	if c.closed {
		return engine.ErrClosed
	}
	c.inflight++
	return nil
}

func (c *Client) exit() {
	c.life.Lock()
	c.inflight--
	if c.inflight == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.life.Unlock()
}

func (c *Client) cached() (engine.Description, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.desc == nil {
		return engine.Description{}, false
	}
	return *c.desc, true
}

// Handshake performs the protocol handshake now, if it has not succeeded
// before, and returns the engine's description. It fails with an error
// matching ErrProtocolMismatch (and engine.ErrUnsupported) when the server
// speaks another contract version, and engine.ErrUnavailable when it cannot
// be reached. Concurrent handshakes run one at a time; waiting for another
// caller's turn ends with ctx. It does not check whether the Client is
// closed.
func (c *Client) Handshake(ctx context.Context) (engine.Description, error) {
	if d, ok := c.cached(); ok {
		return d, nil
	}
	select {
	case c.hs <- struct{}{}:
	case <-ctx.Done():
		return engine.Description{}, ctx.Err()
	}
	defer func() { <-c.hs }()
	if d, ok := c.cached(); ok {
		return d, nil
	}
	resp, err := c.rpc.Describe(ctx, &enginepb.DescribeRequest{ProtocolVersion: engine.ProtocolVersion})
	if err != nil {
		return engine.Description{}, FromStatus(err)
	}
	if v := resp.GetProtocolVersion(); v != engine.ProtocolVersion {
		return engine.Description{}, fmt.Errorf("%w: engine speaks protocol %d, this side speaks %d", ErrProtocolMismatch, v, engine.ProtocolVersion)
	}
	d := descriptionFromPB(resp.GetDescription())
	c.mu.Lock()
	c.desc = &d
	c.mu.Unlock()
	return d, nil
}

// Describe implements engine.Engine. It returns the description cached by
// the handshake; if no handshake has succeeded yet it performs one, bounded
// by a short timeout, and returns the zero Description if that fails. It
// works after Close.
func (c *Client) Describe() engine.Description {
	if d, ok := c.cached(); ok {
		return d
	}
	ctx, cancel := context.WithTimeout(context.Background(), describeTimeout)
	defer cancel()
	d, _ := c.Handshake(ctx)
	return d
}

// start is the common prologue of Read, Apply and Scan.
func (c *Client) start(ctx context.Context) error {
	if err := c.enter(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		c.exit()
		return err
	}
	if _, err := c.Handshake(ctx); err != nil {
		c.exit()
		return err
	}
	return nil
}

// Read implements engine.Engine with one Read call on the Stream (or a
// unary Read call, against a server without the Stream method).
func (c *Client) Read(ctx context.Context, keys [][]byte) ([]engine.Entry, error) {
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	defer c.exit()
	req := &enginepb.ReadRequest{ProtocolVersion: engine.ProtocolVersion, Keys: keys}
	resp, err := roundTrip(ctx, c, "a Read with no entries",
		func(sc *enginepb.StreamCall) { sc.Call = &enginepb.StreamCall_Read{Read: req} },
		(*enginepb.StreamAnswer).GetRead,
		func() (*enginepb.ReadResponse, error) { return c.rpc.Read(ctx, req) })
	if err != nil {
		return nil, err
	}
	if len(resp.GetEntries()) != len(keys) {
		return nil, fmt.Errorf("%w: engine returned %d entries for %d keys", engine.ErrInternal, len(resp.GetEntries()), len(keys))
	}
	out := make([]engine.Entry, len(keys))
	for i, e := range resp.GetEntries() {
		out[i] = entryFromPB(e, false)
	}
	return out, nil
}

// roundTrip makes one call on the Stream (the request set by build, the answer
// taken by pick, nil when the answer lacks it: an internal error naming
// missing) or, against a server without the Stream method, with unary.
// Errors come back as the contract's.
func roundTrip[R any](ctx context.Context, c *Client, missing string, build func(*enginepb.StreamCall),
	pick func(*enginepb.StreamAnswer) *R, unary func() (*R, error)) (*R, error) {
	if !c.noStream.Load() {
		a, err := c.streamCall(ctx, build)
		switch {
		case errors.Is(err, errNoStream):
		case err != nil:
			return nil, err
		case a.GetError() != nil:
			return nil, fromStreamError(a.GetError())
		case pick(a) == nil:
			return nil, fmt.Errorf("%w: engine answered %s", engine.ErrInternal, missing)
		default:
			return pick(a), nil
		}
	}
	resp, err := unary()
	if err != nil {
		return nil, FromStatus(err)
	}
	return resp, nil
}

// Apply implements engine.Engine with one Apply call on the Stream (or a
// unary Apply call, against a server without the Stream method). If the
// call fails after the request was sent (engine.ErrUnavailable, or the
// context ending), the writes may or may not have been applied, as the
// contract says: on the Stream, a caller whose context ends returns at once
// and the server is asked to cancel the call, which may have taken effect
// already.
func (c *Client) Apply(ctx context.Context, writes []engine.Write, opts engine.ApplyOptions) ([]engine.Result, error) {
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	defer c.exit()
	if len(writes) == 0 {
		return nil, nil
	}
	req := &enginepb.ApplyRequest{
		ProtocolVersion: engine.ProtocolVersion,
		Writes:          writesToPB(writes),
		Atomic:          opts.Atomic,
		NoSync:          opts.NoSync,
	}
	resp, err := roundTrip(ctx, c, "an Apply with no results",
		func(sc *enginepb.StreamCall) { sc.Call = &enginepb.StreamCall_Apply{Apply: req} },
		(*enginepb.StreamAnswer).GetApply,
		func() (*enginepb.ApplyResponse, error) { return c.rpc.Apply(ctx, req) })
	if err != nil {
		return nil, applyErr(err)
	}
	if len(resp.GetResults()) != len(writes) {
		return nil, fmt.Errorf("%w: engine returned %d results for %d writes", engine.ErrInternal, len(resp.GetResults()), len(writes))
	}
	return resultsFromPB(resp.GetResults()), nil
}

// applyErr returns the error of a failed Apply call. An error the server
// sent (with one of this package's reasons) is the engine's and says what
// happened. One made by gRPC itself, for a sent call, says nothing of the
// writes' fate (RESOURCE_EXHAUSTED, say, may be an answer too large to
// receive, after the writes were applied): it becomes engine.ErrUnavailable,
// outcome unknown, rather than the contract error its code stands for
// (ErrTooLarge would tell the caller that nothing was applied). Requests
// over the size limit are refused before they are sent.
func applyErr(err error) error {
	var we *Error
	if !errors.As(err, &we) || we.Reason != "" {
		return err
	}
	switch {
	case errors.Is(err, engine.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		we.Code == codes.Unimplemented:
		return err
	}
	return fmt.Errorf("%w: the engine call failed in transport, so the outcome of these writes is unknown: %v", engine.ErrUnavailable, err)
}

// Scan implements engine.Engine with one streaming Scan call: the server
// reads one snapshot and sends it in pages, and fn is called for each
// entry as pages arrive. When fn returns an error, Scan cancels the stream
// and returns that error unwrapped.
func (c *Client) Scan(ctx context.Context, opts engine.ScanOptions, fn func(engine.Entry) error) error {
	if err := c.start(ctx); err != nil {
		return err
	}
	defer c.exit()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Scan(ctx, &enginepb.ScanRequest{
		ProtocolVersion: engine.ProtocolVersion,
		Start:           opts.Start,
		End:             opts.End,
		Reverse:         opts.Reverse,
		Limit:           int64(opts.Limit),
		KeysOnly:        opts.KeysOnly,
	})
	if err != nil {
		return FromStatus(err)
	}
	n := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return FromStatus(err)
		}
		for _, pe := range resp.GetEntries() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(entryFromPB(pe, opts.KeysOnly)); err != nil {
				return err
			}
			n++
			if opts.Limit > 0 && n >= opts.Limit {
				return nil
			}
		}
	}
}

// Close implements engine.Engine: it refuses new calls (they return
// engine.ErrClosed), waits for the calls in progress, then closes the remote
// engine with a Close call bounded by a timeout of one minute. A remote
// engine that is already closed, or unreachable, is not an error: there is
// nothing left to close. Closing twice returns nil.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return c.CloseContext(ctx)
}

// CloseContext is Close bounded by ctx: if ctx ends while calls are still
// in progress, or during the remote Close call, it returns an error
// matching ctx.Err() and the remote engine may still be open (the Client
// refuses new calls either way). Only the first Close or CloseContext does
// anything; later ones return nil.
func (c *Client) CloseContext(ctx context.Context) error {
	c.life.Lock()
	if c.closed {
		c.life.Unlock()
		return nil
	}
	c.closed = true
	var idle chan struct{}
	if c.inflight > 0 {
		idle = make(chan struct{})
		c.idle = idle
	}
	c.life.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("wire: close: calls still in progress: %w", ctx.Err())
		}
	}
	// No call is in progress: end the Stream, if one is open.
	c.mux.Close()
	c.baseCancel()
	c.mux.Wait()
	_, err := c.rpc.Close(ctx, &enginepb.CloseRequest{})
	if err = FromStatus(err); err != nil && !errors.Is(err, engine.ErrClosed) && !errors.Is(err, engine.ErrUnavailable) {
		return err
	}
	return nil
}
