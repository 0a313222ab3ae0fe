package server

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/flaredb/flaredb/core/engine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// TestClassifyMessage: the sentinel's text leads no message (the reason
// carries it), whatever else the message says stays.
func TestClassifyMessage(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   codes.Code
		reason string
		msg    string
	}{
		{fmt.Errorf("%w: key of 5000 bytes exceeds max_key_size = 4096", engine.ErrTooLarge), codes.InvalidArgument, kvpb.ReasonTooLarge,
			"key of 5000 bytes exceeds max_key_size = 4096"},
		{fmt.Errorf("%w: plugin p is down", engine.ErrUnavailable), codes.Unavailable, kvpb.ReasonUnavailable, "plugin p is down"},
		// Not in front: left as it is.
		{fmt.Errorf("plugin p: %w", engine.ErrUnavailable), codes.Unavailable, kvpb.ReasonUnavailable, "plugin p: engine: unavailable"},
		// Nothing but the sentinel: the message would be empty.
		{engine.ErrNotFound, codes.NotFound, kvpb.ReasonNotFound, "engine: not found"},
		{errors.New("disk on fire"), codes.Internal, kvpb.ReasonInternal, "disk on fire"},
	} {
		code, reason, msg := classify(tc.err)
		if code != tc.code || reason != tc.reason || msg != tc.msg {
			t.Errorf("classify(%q) = %v, %q, %q; want %v, %q, %q", tc.err, code, reason, msg, tc.code, tc.reason, tc.msg)
		}
	}
}
