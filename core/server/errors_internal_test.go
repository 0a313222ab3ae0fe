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
		// An applied write whose answer is too large wraps two sentinels,
		// ErrTooLarge in front: neither leads the message.
		{answerTooLarge(9000, 4096, "limits.max_message_size", true), codes.ResourceExhausted, kvpb.ReasonTooLarge,
			"the write was applied, but its answer of 9000 bytes (the previous values) exceeds the 4096-byte message limit " +
				"(limits.max_message_size); do not retry it, read the keys with fewer at once"},
		{answerTooLarge(9000, 4096, "limits.max_message_size", false), codes.InvalidArgument, kvpb.ReasonTooLarge,
			"answer of 9000 bytes exceeds the 4096-byte message limit (limits.max_message_size); nothing was changed; ask for fewer keys at once"},
		// The matched sentinel after another one in front.
		{fmt.Errorf("%w: %w: plugin p is down", engine.ErrInternal, engine.ErrUnavailable), codes.Unavailable, kvpb.ReasonUnavailable,
			"plugin p is down"},
		// The same sentinel twice in front.
		{fmt.Errorf("%w: %w: key of 5000 bytes", engine.ErrTooLarge, engine.ErrTooLarge), codes.InvalidArgument, kvpb.ReasonTooLarge,
			"key of 5000 bytes"},
		// A sentinel's text that the error does not wrap stays.
		{fmt.Errorf("%w: engine: corrupt: says the plugin", engine.ErrUnavailable), codes.Unavailable, kvpb.ReasonUnavailable,
			"engine: corrupt: says the plugin"},
		// Sentinels and nothing else: the last one stays.
		{fmt.Errorf("%w: %w", engine.ErrTooLarge, errWriteAnswerTooLarge), codes.ResourceExhausted, kvpb.ReasonTooLarge,
			"write applied, answer too large"},
	} {
		code, reason, msg := classify(tc.err)
		if code != tc.code || reason != tc.reason || msg != tc.msg {
			t.Errorf("classify(%q) = %v, %q, %q; want %v, %q, %q", tc.err, code, reason, msg, tc.code, tc.reason, tc.msg)
		}
	}
}
