package wire

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flaredb/flaredb/core/engine"
)

var sentinels = []error{
	engine.ErrNotFound, engine.ErrClosed, engine.ErrTooLarge, engine.ErrInvalidArgument,
	engine.ErrUnavailable, engine.ErrUnsupported, engine.ErrCorrupt, engine.ErrInternal,
	context.Canceled, context.DeadlineExceeded,
}

func TestErrorRoundTrip(t *testing.T) {
	for _, s := range sentinels {
		err := fmt.Errorf("layer: %w", fmt.Errorf("key %q: %w", "k", s))
		st := ToStatus(err)
		if _, ok := status.FromError(st); !ok {
			t.Fatalf("%v: ToStatus did not give a status", s)
		}
		back := FromStatus(st)
		if !errors.Is(back, s) {
			t.Errorf("%v: round trip gave %v, which does not match", s, back)
		}
		for _, other := range sentinels {
			if other != s && errors.Is(back, other) {
				t.Errorf("%v: round trip also matches %v", s, other)
			}
		}
		if back.Error() != err.Error() {
			t.Errorf("%v: message %q, want %q", s, back.Error(), err.Error())
		}
	}
}

func TestErrorCodesAreDistinct(t *testing.T) {
	seen := map[codes.Code]error{}
	for _, s := range sentinels {
		c := status.Code(ToStatus(s))
		if prev, ok := seen[c]; ok {
			t.Errorf("%v and %v share code %v", s, prev, c)
		}
		seen[c] = s
	}
}

func TestProtocolMismatchRoundTrip(t *testing.T) {
	back := FromStatus(ToStatus(fmt.Errorf("%w: 2 vs 1", ErrProtocolMismatch)))
	if !errors.Is(back, ErrProtocolMismatch) || !errors.Is(back, engine.ErrUnsupported) {
		t.Fatalf("got %v", back)
	}
}

func TestUnknownErrorIsInternal(t *testing.T) {
	back := FromStatus(ToStatus(errors.New("disk on fire")))
	if !errors.Is(back, engine.ErrInternal) {
		t.Fatalf("got %v", back)
	}
	if status.Code(ToStatus(errors.New("x"))) != codes.Internal {
		t.Fatal("unknown error not INTERNAL")
	}
}

func TestCodeOnlyStatuses(t *testing.T) {
	for _, tc := range []struct {
		code codes.Code
		want error
	}{
		{codes.Unavailable, engine.ErrUnavailable},
		{codes.Canceled, context.Canceled},
		{codes.DeadlineExceeded, context.DeadlineExceeded},
		{codes.ResourceExhausted, engine.ErrTooLarge},
		{codes.Unimplemented, engine.ErrUnsupported},
		{codes.Unknown, engine.ErrInternal},
		{codes.Aborted, engine.ErrInternal},
	} {
		got := FromStatus(status.Error(tc.code, "transport says no"))
		if !errors.Is(got, tc.want) {
			t.Errorf("%v: got %v, want %v", tc.code, got, tc.want)
		}
	}
	if got := FromStatus(errors.New("plain")); !errors.Is(got, engine.ErrInternal) {
		t.Errorf("non-status error: got %v", got)
	}
	if FromStatus(nil) != nil || ToStatus(nil) != nil {
		t.Error("nil not kept")
	}
}
