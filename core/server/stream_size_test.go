package server_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// Sizes of TestStreamAnswerSize: a small message limit, and values just
// under it, so that any two answers carrying one value exceed it.
const (
	testMaxMsg   = 1 << 20
	testValueLen = testMaxMsg - 16<<10
)

// startSizeServer starts the server on the memory engine with a message
// limit of testMaxMsg and returns a client whose own receive limit is far
// above it, so that only the server's limit applies.
func startSizeServer(t *testing.T) kvpb.KVClient {
	t.Helper()
	srv, err := startTest(t, testServer{
		dataDir: t.TempDir(),
		name:    "memory",
		open:    func(string) (engine.Engine, error) { return memengine.New(), nil },
		config: func(c *config.Config) {
			c.Limits.MaxValueSize = testMaxMsg - 8<<10
			c.Limits.MaxMessageSize = testMaxMsg
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64*testMaxMsg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kvpb.NewKVClient(conn)
}

func getOp(id uint64, key string) *kvpb.StreamOp {
	return &kvpb.StreamOp{Id: id, Request: &kvpb.StreamOp_Get{Get: &kvpb.GetRequest{Key: []byte(key)}}}
}

func batchGetOp(id uint64, keys ...string) *kvpb.StreamOp {
	r := &kvpb.BatchGetRequest{}
	for _, k := range keys {
		r.Keys = append(r.Keys, []byte(k))
	}
	return &kvpb.StreamOp{Id: id, Request: &kvpb.StreamOp_BatchGet{BatchGet: r}}
}

func putOp(id uint64, key, value string) *kvpb.StreamOp {
	return &kvpb.StreamOp{Id: id, Request: &kvpb.StreamOp_Put{Put: &kvpb.PutRequest{Key: []byte(key), Value: []byte(value)}}}
}

// exchange sends ops in one StreamRequest and receives until every op has
// its answer; it returns the answers by id and the number of messages
// they came in, checking that no message exceeds the server's limit.
func exchange(t *testing.T, st kvpb.KV_StreamClient, ops []*kvpb.StreamOp) (map[uint64]*kvpb.StreamResult, int) {
	t.Helper()
	want := make(map[uint64]bool, len(ops))
	for _, op := range ops {
		want[op.Id] = true
	}
	if err := st.Send(&kvpb.StreamRequest{Ops: ops}); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := make(map[uint64]*kvpb.StreamResult, len(ops))
	msgs := 0
	for len(got) < len(want) {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("receive after %d of %d answers: %v", len(got), len(want), err)
		}
		msgs++
		if n := proto.Size(resp); n > testMaxMsg {
			t.Fatalf("message of %d bytes exceeds the %d-byte limit", n, testMaxMsg)
		}
		for _, r := range resp.Results {
			if !want[r.Id] || got[r.Id] != nil {
				t.Fatalf("unexpected or repeated answer %d", r.Id)
			}
			got[r.Id] = r
		}
	}
	return got, msgs
}

// TestStreamAnswerSize checks that the multiplexed stream keeps each
// message under limits.max_message_size: answers that do not fit together
// are split across messages, and an answer that cannot fit in any message
// fails its own request with TOO_LARGE while the stream and the other
// requests carry on.
func TestStreamAnswerSize(t *testing.T) {
	c := startSizeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	big := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, testValueLen) }
	for i := range 4 {
		if _, err := c.Put(ctx, &kvpb.PutRequest{Key: fmt.Appendf(nil, "big/%d", i), Value: big(i)}); err != nil {
			t.Fatalf("put big/%d: %v", i, err)
		}
	}
	for _, k := range []string{"small/a", "small/b"} {
		if _, err := c.Put(ctx, &kvpb.PutRequest{Key: []byte(k), Value: []byte(k)}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}

	// check inspects the answer to one op.
	type check func(t *testing.T, r *kvpb.StreamResult)
	value := func(want []byte) check {
		return func(t *testing.T, r *kvpb.StreamResult) {
			if g := r.GetGet(); r.Error != nil || g == nil || !g.Found || !bytes.Equal(g.Value, want) {
				t.Errorf("answer %d: error %v, want a Get of %d bytes", r.Id, r.Error, len(want))
			}
		}
	}
	entries := func(want ...[]byte) check {
		return func(t *testing.T, r *kvpb.StreamResult) {
			b := r.GetBatchGet()
			if r.Error != nil || b == nil || len(b.Entries) != len(want) {
				t.Fatalf("answer %d: error %v, want a BatchGet of %d entries", r.Id, r.Error, len(want))
			}
			for i, e := range b.Entries {
				if !bytes.Equal(e.Value, want[i]) || e.Version == 0 {
					t.Errorf("answer %d entry %d: %d bytes version %d, want %d bytes", r.Id, i, len(e.Value), e.Version, len(want[i]))
				}
			}
		}
	}
	put := func(t *testing.T, r *kvpb.StreamResult) {
		if r.Error != nil || r.GetPut() == nil || r.GetPut().Version == 0 {
			t.Errorf("answer %d: error %v, want a Put", r.Id, r.Error)
		}
	}
	tooLarge := func(t *testing.T, r *kvpb.StreamResult) {
		e := r.Error
		if e == nil || r.Response != nil {
			t.Fatalf("answer %d: %v, want a TOO_LARGE error", r.Id, r)
		}
		if e.Reason != kvpb.ReasonTooLarge || codes.Code(e.Code) != codes.InvalidArgument {
			t.Errorf("answer %d: code %v reason %q, want InvalidArgument TOO_LARGE", r.Id, codes.Code(e.Code), e.Reason)
		}
		if !strings.Contains(e.Message, fmt.Sprintf("%d-byte message limit", testMaxMsg)) {
			t.Errorf("answer %d: message %q does not name the limit", r.Id, e.Message)
		}
	}

	cases := []struct {
		name string
		ops  []*kvpb.StreamOp
		want map[uint64]check
		// minMsgs is the fewest messages the answers can come in.
		minMsgs int
		// written is the key and value the case's Put writes.
		written [2]string
	}{{
		name: "oversized answer fails alone",
		ops: []*kvpb.StreamOp{
			batchGetOp(1, "big/0", "big/1"),
			getOp(2, "small/a"),
			putOp(3, "small/new", "n"),
			batchGetOp(4, "small/a", "small/b"),
			getOp(5, "big/2"),
		},
		want: map[uint64]check{
			1: tooLarge,
			2: value([]byte("small/a")),
			3: put,
			4: entries([]byte("small/a"), []byte("small/b")),
			5: value(big(2)),
		},
		minMsgs: 1,
		written: [2]string{"small/new", "n"},
	}, {
		name: "answers within the limit are split across messages",
		ops: []*kvpb.StreamOp{
			// Several Gets are read together (streamGets).
			getOp(1, "big/0"),
			getOp(2, "big/1"),
			getOp(3, "big/2"),
			getOp(4, "big/3"),
			batchGetOp(5, "big/1"),
			getOp(6, "small/b"),
			putOp(7, "small/other", "o"),
		},
		want: map[uint64]check{
			1: value(big(0)),
			2: value(big(1)),
			3: value(big(2)),
			4: value(big(3)),
			5: entries(big(1)),
			6: value([]byte("small/b")),
			7: put,
		},
		// No two answers carrying a big value fit in one message.
		minMsgs: 5,
		written: [2]string{"small/other", "o"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			st, err := c.Stream(sctx)
			if err != nil {
				t.Fatal(err)
			}
			got, msgs := exchange(t, st, tc.ops)
			for id, chk := range tc.want {
				chk(t, got[id])
			}
			if msgs < tc.minMsgs {
				t.Errorf("answers came in %d messages, want at least %d", msgs, tc.minMsgs)
			}

			// The stream still serves requests, and the writes above were
			// applied.
			later, _ := exchange(t, st, []*kvpb.StreamOp{getOp(100, tc.written[0]), getOp(101, "small/a")})
			value([]byte(tc.written[1]))(t, later[100])
			value([]byte("small/a"))(t, later[101])
			if err := st.CloseSend(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUnaryAnswerSize checks that a unary answer over
// limits.max_message_size fails with InvalidArgument and the TOO_LARGE
// reason, naming the limit, as the stream does (gRPC alone would answer a
// bare ResourceExhausted), and that answers that fit are unaffected.
func TestUnaryAnswerSize(t *testing.T) {
	c := startSizeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	big := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, testValueLen) }
	for i := range 2 {
		if _, err := c.Put(ctx, &kvpb.PutRequest{Key: fmt.Appendf(nil, "big/%d", i), Value: big(i)}); err != nil {
			t.Fatalf("put big/%d: %v", i, err)
		}
	}

	_, err := c.BatchGet(ctx, &kvpb.BatchGetRequest{Keys: [][]byte{[]byte("big/0"), []byte("big/1")}})
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), fmt.Sprintf("%d-byte message limit", testMaxMsg)) {
		t.Fatalf("BatchGet of two big values: %v, want InvalidArgument naming the limit", err)
	}
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.Reason
		}
	}
	if reason != kvpb.ReasonTooLarge {
		t.Errorf("reason %q, want %q", reason, kvpb.ReasonTooLarge)
	}

	// Each value alone fits, unary and batched.
	for i := range 2 {
		key := fmt.Appendf(nil, "big/%d", i)
		g, err := c.Get(ctx, &kvpb.GetRequest{Key: key})
		if err != nil || !bytes.Equal(g.Value, big(i)) {
			t.Fatalf("Get %s: %v", key, err)
		}
		b, err := c.BatchGet(ctx, &kvpb.BatchGetRequest{Keys: [][]byte{key}})
		if err != nil || len(b.Entries) != 1 || !bytes.Equal(b.Entries[0].Value, big(i)) {
			t.Fatalf("BatchGet %s: %v", key, err)
		}
	}
}

// TestWriteAnswerTooLarge: a write whose answer (the keys' values before
// it) does not fit in a message keeps its outcome. Applied, it fails with
// ResourceExhausted and TOO_LARGE, saying that it was applied, so that no
// one takes it for a refused write; refused by its conditions, it changed
// nothing and fails with InvalidArgument and TOO_LARGE. Unary and on the
// stream.
func TestWriteAnswerTooLarge(t *testing.T) {
	c := startSizeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	big := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, testValueLen) }
	// deleteBoth deletes prefix/0 and prefix/1, if prefix/0 has version
	// 1<<62 when failing is set (it never has).
	deleteBoth := func(prefix string, failing bool) *kvpb.BatchRequest {
		first := &kvpb.Op{Kind: kvpb.OpKind_OP_DELETE, Key: []byte(prefix + "/0")}
		if failing {
			first.Condition = &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VERSION, Version: 1 << 62}
		}
		return &kvpb.BatchRequest{Ops: []*kvpb.Op{first, {Kind: kvpb.OpKind_OP_DELETE, Key: []byte(prefix + "/1")}}}
	}
	// answer is the error a way of sending gives a batch: code, reason and
	// message.
	type answer struct {
		code            codes.Code
		reason, message string
	}
	unary := func(t *testing.T, req *kvpb.BatchRequest) answer {
		_, err := c.Batch(ctx, req)
		st, _ := status.FromError(err)
		var reason string
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.Reason
			}
		}
		return answer{st.Code(), reason, st.Message()}
	}
	stream := func(t *testing.T, req *kvpb.BatchRequest) answer {
		st, err := c.Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.CloseSend()
		got, _ := exchange(t, st, []*kvpb.StreamOp{{Id: 1, Request: &kvpb.StreamOp_Batch{Batch: req}}})
		e := got[1].GetError()
		if e == nil {
			t.Fatalf("answer %v, want an error", got[1])
		}
		return answer{codes.Code(e.Code), e.Reason, e.Message}
	}
	cases := []struct {
		name    string
		send    func(*testing.T, *kvpb.BatchRequest) answer
		failing bool
		code    codes.Code
		says    string
	}{
		{"unary-applied", unary, false, codes.ResourceExhausted, "the write was applied"},
		{"stream-applied", stream, false, codes.ResourceExhausted, "the write was applied"},
		{"unary-refused", unary, true, codes.InvalidArgument, "nothing was changed"},
		{"stream-refused", stream, true, codes.InvalidArgument, "nothing was changed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 2 {
				if _, err := c.Put(ctx, &kvpb.PutRequest{Key: fmt.Appendf(nil, "%s/%d", tc.name, i), Value: big(i)}); err != nil {
					t.Fatal(err)
				}
			}
			a := tc.send(t, deleteBoth(tc.name, tc.failing))
			if a.code != tc.code || a.reason != kvpb.ReasonTooLarge || !strings.Contains(a.message, tc.says) {
				t.Errorf("code %v reason %q message %q, want %v TOO_LARGE saying %q", a.code, a.reason, a.message, tc.code, tc.says)
			}
			for i := range 2 {
				g, err := c.Get(ctx, &kvpb.GetRequest{Key: fmt.Appendf(nil, "%s/%d", tc.name, i)})
				if err != nil || g.Found == !tc.failing {
					t.Errorf("%s/%d after the batch: found %v, err %v; want found %v", tc.name, i, g.GetFound(), err, tc.failing)
				}
			}
		})
	}
}
