package client

import (
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
)

// Defaults used when an option is not given (or given a zero value).
const (
	// DefaultMaxMessageSize is the default limit on one received gRPC
	// message (gRPC's own default is 4 MiB, too small for large values and
	// big scans pages).
	DefaultMaxMessageSize = 256 << 20
	// DefaultMaxOpsPerMessage bounds how many requests one StreamRequest
	// carries.
	DefaultMaxOpsPerMessage = 512
	// DefaultMaxBytesPerMessage bounds the encoded size of one
	// StreamRequest; a single request larger than this is sent as a unary
	// call instead of on the stream.
	DefaultMaxBytesPerMessage = 1 << 20
	// DefaultStreams is the default number of multiplexed streams.
	DefaultStreams = 1
)

// RetryPolicy says how calls failing with an Unavailable error are retried.
// The zero value means the defaults; a field left zero takes its default.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included
	// (default 5). 1 disables retries.
	MaxAttempts int
	// InitialBackoff is the pause before the second attempt (default
	// 20ms).
	InitialBackoff time.Duration
	// MaxBackoff caps the pause between attempts (default 1s).
	MaxBackoff time.Duration
	// Multiplier grows the pause after each attempt (default 2). Each pause
	// is jittered by up to ±20%.
	Multiplier float64
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = 20 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = time.Second
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	return p
}

// Option configures a Client in New.
type Option func(*options)

type options struct {
	tls             *tls.Config
	dialOpts        []grpc.DialOption
	unary           bool
	lazy            bool
	retry           RetryPolicy
	maxMsgSize      int
	streams         int
	maxOpsPerMsg    int
	maxBytesPerMsg  int
	testHookSend    func(ops int) // called by the sender before each Send (tests)
	testHookEnqueue func()        // called after a call is queued (tests)
	testHookNoLimit bool          // never ask the server's limit, as of a server that has none (tests)
}

func (o *options) ensureDefaults() {
	o.retry = o.retry.withDefaults()
	if o.maxMsgSize <= 0 {
		o.maxMsgSize = DefaultMaxMessageSize
	}
	if o.streams <= 0 {
		o.streams = DefaultStreams
	}
	if o.maxOpsPerMsg <= 0 {
		o.maxOpsPerMsg = DefaultMaxOpsPerMessage
	}
	if o.maxBytesPerMsg <= 0 {
		o.maxBytesPerMsg = DefaultMaxBytesPerMessage
	}
	// A coalesced message must fit the client's own send limit (less room
	// for framing): gRPC refuses a larger one, which breaks the stream
	// under every call in it.
	if limit := o.maxMsgSize - messageHeadroom; o.maxBytesPerMsg > limit {
		o.maxBytesPerMsg = max(limit, 1)
	}
}

// messageHeadroom is kept below the message limit for the framing of a
// coalesced stream message.
const messageHeadroom = 1 << 10

// WithTLS makes the client use TLS with the given configuration (nil means
// a zero tls.Config: system roots, server name from the address). Without
// it the connection is plaintext.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		o.tls = cfg
	}
}

// WithInsecure makes the connection plaintext (the default); it undoes an
// earlier WithTLS.
func WithInsecure() Option {
	return func(o *options) { o.tls = nil }
}

// WithDialOptions appends gRPC dial options, applied after the client's own
// (transport credentials and message size limits), so they can override
// them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithUnary makes every call a plain unary RPC instead of using the
// multiplexed stream.
func WithUnary() Option {
	return func(o *options) { o.unary = true }
}

// WithLazyConnect makes New return without waiting for the connection; the
// first call connects. By default New waits until the server is reachable
// (or ctx ends) and fails with ErrUnavailable when it is not. Either way
// the client asks the server's message limit (Status) before its first
// stream call, to keep coalesced stream messages within it: New does, or
// else the first stream call (so unary interceptors given with
// WithDialOptions see that Status call).
func WithLazyConnect() Option {
	return func(o *options) { o.lazy = true }
}

// WithRetry sets the retry policy for Unavailable errors.
func WithRetry(p RetryPolicy) Option {
	return func(o *options) { o.retry = p }
}

// WithMaxMessageSize sets the largest gRPC message the client sends or
// receives, in bytes (default DefaultMaxMessageSize). The server applies its
// own limit to what it receives.
func WithMaxMessageSize(n int) Option {
	return func(o *options) { o.maxMsgSize = n }
}

// WithStreams sets how many multiplexed streams the client opens (default
// DefaultStreams); calls are spread over them round robin.
func WithStreams(n int) Option {
	return func(o *options) { o.streams = n }
}

// WithCoalescing bounds how many requests (maxOps) and how many encoded
// bytes (maxBytes) one stream message carries; zero keeps a default
// (DefaultMaxOpsPerMessage, DefaultMaxBytesPerMessage). maxOps 1 disables
// coalescing. Requests larger than maxBytes are sent as unary calls. The
// client lowers maxBytes to the server's message limit (less room for
// framing) once it has learned that limit.
func WithCoalescing(maxOps, maxBytes int) Option {
	return func(o *options) {
		o.maxOpsPerMsg = maxOps
		o.maxBytesPerMsg = maxBytes
	}
}

// WriteOption modifies one write call (Put, Delete, CompareAndSwap,
// CompareAndDelete, Batch).
type WriteOption func(*writeOptions)

type writeOptions struct {
	previous bool
	async    bool
}

func collectWriteOptions(opts []WriteOption) writeOptions {
	var w writeOptions
	for _, o := range opts {
		if o != nil {
			o(&w)
		}
	}
	return w
}

// WithPrevious asks Put and Delete to return the key's previous value and
// version. CompareAndSwap, CompareAndDelete and Batch always return them, so
// they ignore it.
func WithPrevious() WriteOption {
	return func(w *writeOptions) { w.previous = true }
}

// WithAsync acknowledges the write once it is in the engine's log, before
// it is synced: it survives a process crash but perhaps not a machine crash.
// Without it writes are synced (the server's default durability).
func WithAsync() WriteOption {
	return func(w *writeOptions) { w.async = true }
}
