package kvpb

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that every
// FlareDB error status carries.
const ErrorDomain = "flaredb.io"

// Reasons carried in ErrorInfo.Reason (unary calls) and Error.Reason (the
// multiplexed stream). Each names one error of the engine contract or the
// server; the gRPC code alone is coarser (TOO_LARGE and INVALID_ARGUMENT
// are both InvalidArgument, CLOSED and UNAVAILABLE both Unavailable). One
// reason may come with two codes: TOO_LARGE is InvalidArgument for a
// refused request, and ResourceExhausted for a write that was applied but
// whose answer exceeded the message limit.
const (
	ReasonNotFound         = "NOT_FOUND"
	ReasonClosed           = "CLOSED"
	ReasonTooLarge         = "TOO_LARGE"
	ReasonInvalidArgument  = "INVALID_ARGUMENT"
	ReasonUnavailable      = "UNAVAILABLE"
	ReasonUnsupported      = "UNSUPPORTED"
	ReasonCorrupt          = "CORRUPT"
	ReasonInternal         = "INTERNAL"
	ReasonCanceled         = "CANCELED"
	ReasonDeadlineExceeded = "DEADLINE_EXCEEDED"
	ReasonShuttingDown     = "SHUTTING_DOWN"
)

// MaxRecvMessageSizeHeader is the metadata key under which a client may
// declare, when it opens a Stream, the largest message it accepts (in
// bytes, decimal). The server then keeps every answer on that stream
// within it, as within its own limit: an answer too large fails its own
// request with TOO_LARGE instead of breaking the client's stream.
const MaxRecvMessageSizeHeader = "flaredb-max-recv-message-size"
