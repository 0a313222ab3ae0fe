package main_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
)

// wantErr checks that err is a status with code and reason.
func wantErr(t *testing.T, what string, err error, code codes.Code, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v %s", what, code, reason)
	}
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("%s: code %v (%v), want %v", what, st.Code(), err, code)
	}
	got := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			got = info.Reason
		}
	}
	if got != reason {
		t.Fatalf("%s: reason %q (%v), want %q", what, got, err, reason)
	}
}

func TestAPI(t *testing.T) {
	for _, mode := range engineModes {
		t.Run(mode, func(t *testing.T) {
			s := startServer(t, t.TempDir(), append(engineArgs(mode), "--max-key-size", "64", "--max-value-size", "1KiB", "--max-batch-ops", "8")...)
			c := s.dial()
			testAPI(t, c)
			s.stop()
		})
	}
}

func testAPI(t *testing.T, c kvpb.KVClient) {
	x := ctx(t)
	st, err := c.Status(x, &kvpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Limits.MaxKeySize != 64 || st.Limits.MaxValueSize != 1024 || st.Limits.MaxBatchOps != 8 || !st.SyncDefault {
		t.Fatalf("status limits %+v sync %v", st.Limits, st.SyncDefault)
	}

	// Get of an absent key.
	g, err := c.Get(x, &kvpb.GetRequest{Key: []byte("a")})
	if err != nil || g.Found || g.Version != 0 {
		t.Fatalf("get absent: %v %v", g, err)
	}
	// Put, get back, versions increase.
	p1, err := c.Put(x, &kvpb.PutRequest{Key: []byte("a"), Value: []byte("1")})
	if err != nil || p1.Version == 0 {
		t.Fatalf("put: %v %v", p1, err)
	}
	p2, err := c.Put(x, &kvpb.PutRequest{Key: []byte("a"), Value: []byte("2"), ReturnPrevious: true})
	if err != nil || p2.Version <= p1.Version || string(p2.PreviousValue) != "1" || p2.PreviousVersion != p1.Version {
		t.Fatalf("put with previous: %v %v (first version %d)", p2, err, p1.Version)
	}
	g, err = c.Get(x, &kvpb.GetRequest{Key: []byte("a")})
	if err != nil || !g.Found || string(g.Value) != "2" || g.Version != p2.Version {
		t.Fatalf("get: %v %v", g, err)
	}
	// Empty value is a value.
	pe, err := c.Put(x, &kvpb.PutRequest{Key: []byte("empty"), Value: nil})
	if err != nil {
		t.Fatal(err)
	}
	g, err = c.Get(x, &kvpb.GetRequest{Key: []byte("empty")})
	if err != nil || !g.Found || len(g.Value) != 0 || g.Version != pe.Version {
		t.Fatalf("get empty value: %v %v", g, err)
	}

	// CAS: success and failure for each condition kind.
	cases := []struct {
		name string
		key  string
		cond *kvpb.Condition
		ok   bool
	}{
		{"version match", "a", &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VERSION, Version: p2.Version}, true},
		{"version mismatch", "a", &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VERSION, Version: p1.Version}, false},
		{"absent on present", "a", &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_ABSENT}, false},
		{"absent on absent", "new", &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_ABSENT}, true},
		{"exists on absent", "nope", &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_EXISTS}, false},
		{"value match", "a", &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VALUE, Value: []byte("cas:version match")}, true},
		{"value mismatch", "a", &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VALUE, Value: []byte("zzz")}, false},
		{"empty value matches empty", "empty", &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VALUE, Value: nil}, true},
	}
	for _, tc := range cases {
		before, err := c.Get(x, &kvpb.GetRequest{Key: []byte(tc.key)})
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.CompareAndSwap(x, &kvpb.CompareAndSwapRequest{Key: []byte(tc.key), Condition: tc.cond, Value: []byte("cas:" + tc.name)})
		if err != nil {
			t.Fatalf("cas %s: %v", tc.name, err)
		}
		if r.Succeeded != tc.ok {
			t.Fatalf("cas %s: succeeded=%v, want %v (%v)", tc.name, r.Succeeded, tc.ok, r)
		}
		if r.CurrentVersion != before.Version || !bytes.Equal(r.CurrentValue, before.Value) {
			t.Fatalf("cas %s: reported %q@%d, state was %q@%d", tc.name, r.CurrentValue, r.CurrentVersion, before.Value, before.Version)
		}
		after, _ := c.Get(x, &kvpb.GetRequest{Key: []byte(tc.key)})
		if tc.ok && (string(after.Value) != "cas:"+tc.name || after.Version != r.Version || r.Version <= before.Version) {
			t.Fatalf("cas %s: after %v, response %v", tc.name, after, r)
		}
		if !tc.ok && (after.Version != before.Version || !bytes.Equal(after.Value, before.Value)) {
			t.Fatalf("cas %s: failed CAS changed the key: %v -> %v", tc.name, before, after)
		}
	}
	// CAS delete.
	cur, _ := c.Get(x, &kvpb.GetRequest{Key: []byte("new")})
	r, err := c.CompareAndSwap(x, &kvpb.CompareAndSwapRequest{Key: []byte("new"), Delete: true,
		Condition: &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VERSION, Version: cur.Version}})
	if err != nil || !r.Succeeded {
		t.Fatalf("cas delete: %v %v", r, err)
	}
	if g, _ := c.Get(x, &kvpb.GetRequest{Key: []byte("new")}); g.Found {
		t.Fatal("cas delete left the key")
	}

	// Delete with previous; delete of an absent key.
	d, err := c.Delete(x, &kvpb.DeleteRequest{Key: []byte("empty"), ReturnPrevious: true})
	if err != nil || !d.Deleted || d.PreviousVersion == 0 {
		t.Fatalf("delete: %v %v", d, err)
	}
	d, err = c.Delete(x, &kvpb.DeleteRequest{Key: []byte("empty")})
	if err != nil || d.Deleted {
		t.Fatalf("delete absent: %v %v", d, err)
	}

	// Atomic batch: all or nothing.
	a, _ := c.Get(x, &kvpb.GetRequest{Key: []byte("a")})
	fail, err := c.Batch(x, &kvpb.BatchRequest{Ops: []*kvpb.Op{
		{Kind: kvpb.OpKind_OP_PUT, Key: []byte("b1"), Value: []byte("x")},
		{Kind: kvpb.OpKind_OP_PUT, Key: []byte("a"), Value: []byte("y"), Condition: &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VERSION, Version: a.Version + 1}},
	}})
	if err != nil || fail.Succeeded || !fail.Results[0].ConditionHeld || fail.Results[1].ConditionHeld || fail.Results[1].Version != a.Version {
		t.Fatalf("failing batch: %v %v", fail, err)
	}
	if g, _ := c.Get(x, &kvpb.GetRequest{Key: []byte("b1")}); g.Found {
		t.Fatal("failed batch applied a write")
	}
	ok, err := c.Batch(x, &kvpb.BatchRequest{Ops: []*kvpb.Op{
		{Kind: kvpb.OpKind_OP_PUT, Key: []byte("b1"), Value: []byte("x")},
		{Kind: kvpb.OpKind_OP_CHECK, Key: []byte("a"), Condition: &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VERSION, Version: a.Version}},
		{Kind: kvpb.OpKind_OP_DELETE, Key: []byte("b2")},
	}})
	if err != nil || !ok.Succeeded || ok.Version == 0 {
		t.Fatalf("batch: %v %v", ok, err)
	}
	if g, _ := c.Get(x, &kvpb.GetRequest{Key: []byte("b1")}); !g.Found || g.Version != ok.Version {
		t.Fatalf("batch write: %v", g)
	}

	// BatchGet.
	bg, err := c.BatchGet(x, &kvpb.BatchGetRequest{Keys: [][]byte{[]byte("a"), []byte("zz"), []byte("b1")}})
	if err != nil || len(bg.Entries) != 3 || bg.Entries[1].Version != 0 || string(bg.Entries[2].Value) != "x" {
		t.Fatalf("batch get: %v %v", bg, err)
	}

	// Scans: order, bounds, reverse, limit, keys-only, binary keys.
	for i := 0; i < 600; i++ {
		if _, err := c.Put(x, &kvpb.PutRequest{Key: []byte(fmt.Sprintf("s/%04d", i)), Value: []byte{byte(i), 0, 0xFF}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range [][]byte{{'s', 0x00}, {'s', 0xFF}} {
		if _, err := c.Put(x, &kvpb.PutRequest{Key: k, Value: []byte("bin")}); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(req *kvpb.ScanRequest) []*kvpb.KeyValue {
		t.Helper()
		st, err := c.Scan(x, req)
		if err != nil {
			t.Fatal(err)
		}
		var out []*kvpb.KeyValue
		for {
			m, err := st.Recv()
			if errors.Is(err, io.EOF) {
				return out
			}
			if err != nil {
				t.Fatalf("scan %v: %v", req, err)
			}
			out = append(out, m.Entries...)
		}
	}
	all := scan(&kvpb.ScanRequest{Start: []byte("s/"), End: []byte("s0")})
	if len(all) != 600 || string(all[0].Key) != "s/0000" || string(all[599].Key) != "s/0599" {
		t.Fatalf("scan: %d entries", len(all))
	}
	for i := 1; i < len(all); i++ {
		if bytes.Compare(all[i-1].Key, all[i].Key) >= 0 {
			t.Fatalf("scan out of order at %d", i)
		}
	}
	rev := scan(&kvpb.ScanRequest{Start: []byte("s/"), End: []byte("s/0010"), Reverse: true, Limit: 3})
	if len(rev) != 3 || string(rev[0].Key) != "s/0009" || string(rev[2].Key) != "s/0007" {
		t.Fatalf("reverse scan: %v", rev)
	}
	ko := scan(&kvpb.ScanRequest{Start: []byte("s"), End: []byte("s/"), KeysOnly: true})
	if len(ko) != 1 || !bytes.Equal(ko[0].Key, []byte{'s', 0x00}) || len(ko[0].Value) != 0 || ko[0].Version == 0 {
		t.Fatalf("keys-only scan of binary key: %v", ko)
	}
	hi := scan(&kvpb.ScanRequest{Start: []byte{'s', 0xFF}})
	if len(hi) != 1 || !bytes.Equal(hi[0].Key, []byte{'s', 0xFF}) {
		t.Fatalf("scan from 0xFF key: %v", hi)
	}

	// Limits and bad input, each with its reason.
	big := strings.Repeat("k", 65)
	bad := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
	}{
		{"empty key get", func() error { _, err := c.Get(x, &kvpb.GetRequest{}); return err }, codes.InvalidArgument, kvpb.ReasonInvalidArgument},
		{"empty key put", func() error { _, err := c.Put(x, &kvpb.PutRequest{Value: []byte("v")}); return err }, codes.InvalidArgument, kvpb.ReasonInvalidArgument},
		{"oversize key", func() error { _, err := c.Put(x, &kvpb.PutRequest{Key: []byte(big)}); return err }, codes.InvalidArgument, kvpb.ReasonTooLarge},
		{"oversize value", func() error {
			_, err := c.Put(x, &kvpb.PutRequest{Key: []byte("k"), Value: make([]byte, 1025)})
			return err
		}, codes.InvalidArgument, kvpb.ReasonTooLarge},
		{"oversize cas value", func() error {
			_, err := c.CompareAndSwap(x, &kvpb.CompareAndSwapRequest{Key: []byte("k"), Value: make([]byte, 1025)})
			return err
		}, codes.InvalidArgument, kvpb.ReasonTooLarge},
		{"too many batch ops", func() error {
			ops := make([]*kvpb.Op, 9)
			for i := range ops {
				ops[i] = &kvpb.Op{Key: []byte{byte('a' + i)}}
			}
			_, err := c.Batch(x, &kvpb.BatchRequest{Ops: ops})
			return err
		}, codes.InvalidArgument, kvpb.ReasonTooLarge},
		{"duplicate batch key", func() error {
			_, err := c.Batch(x, &kvpb.BatchRequest{Ops: []*kvpb.Op{{Key: []byte("d")}, {Key: []byte("d")}}})
			return err
		}, codes.InvalidArgument, kvpb.ReasonInvalidArgument},
		{"empty batch", func() error { _, err := c.Batch(x, &kvpb.BatchRequest{}); return err }, codes.InvalidArgument, kvpb.ReasonInvalidArgument},
		{"unknown condition", func() error {
			_, err := c.CompareAndSwap(x, &kvpb.CompareAndSwapRequest{Key: []byte("k"), Condition: &kvpb.Condition{Kind: 99}})
			return err
		}, codes.InvalidArgument, kvpb.ReasonInvalidArgument},
		{"reversed scan", func() error {
			st, err := c.Scan(x, &kvpb.ScanRequest{Start: []byte("b"), End: []byte("a")})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, codes.InvalidArgument, kvpb.ReasonInvalidArgument},
	}
	for _, b := range bad {
		wantErr(t, b.name, b.call(), b.code, b.reason)
	}
	if g, _ := c.Get(x, &kvpb.GetRequest{Key: []byte("k")}); g.Found {
		t.Fatal("a rejected write was applied")
	}

	testStream(t, c)
}

// testStream drives the multiplexed stream: many requests in one message,
// answered by id, errors per request.
func testStream(t *testing.T, c kvpb.KVClient) {
	x := ctx(t)
	st, err := c.Stream(x)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	req := &kvpb.StreamRequest{}
	for i := 0; i < n; i++ {
		req.Ops = append(req.Ops, &kvpb.StreamOp{Id: uint64(i), Request: &kvpb.StreamOp_Put{Put: &kvpb.PutRequest{Key: []byte(fmt.Sprintf("m/%02d", i)), Value: []byte("v")}}})
	}
	req.Ops = append(req.Ops, &kvpb.StreamOp{Id: 1000, Request: &kvpb.StreamOp_Put{Put: &kvpb.PutRequest{}}})
	req.Ops = append(req.Ops, &kvpb.StreamOp{Id: 1001})
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]*kvpb.StreamResult{}
	for len(got) < n+2 {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range m.Results {
			if got[r.Id] != nil {
				t.Fatalf("id %d answered twice", r.Id)
			}
			got[r.Id] = r
		}
	}
	for i := 0; i < n; i++ {
		if got[uint64(i)].GetPut().GetVersion() == 0 || got[uint64(i)].Error != nil {
			t.Fatalf("stream put %d: %v", i, got[uint64(i)])
		}
	}
	for _, id := range []uint64{1000, 1001} {
		if e := got[id].Error; e == nil || codes.Code(e.Code) != codes.InvalidArgument || e.Reason != kvpb.ReasonInvalidArgument {
			t.Fatalf("stream bad request %d: %v", id, got[id])
		}
	}
	// Gets of one message, answered together.
	req = &kvpb.StreamRequest{}
	for i := 0; i < n; i++ {
		req.Ops = append(req.Ops, &kvpb.StreamOp{Id: uint64(2000 + i), Request: &kvpb.StreamOp_Get{Get: &kvpb.GetRequest{Key: []byte(fmt.Sprintf("m/%02d", i))}}})
	}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for seen < n {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range m.Results {
			if !r.GetGet().GetFound() || r.GetGet().GetVersion() != got[r.Id-2000].GetPut().GetVersion() {
				t.Fatalf("stream get %d: %v", r.Id, r)
			}
			seen++
		}
	}
	st.CloseSend()
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
}

// TestConcurrentCAS runs read-then-CAS increments from many goroutines
// through the server: the counter ends equal to the successes.
func TestConcurrentCAS(t *testing.T) {
	s := startServer(t, t.TempDir(), "--engine", "badger")
	c := s.dial()
	x := ctx(t)
	const workers, tries = 16, 40
	var mu sync.Mutex
	successes := 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < tries; i++ {
				g, err := c.Get(x, &kvpb.GetRequest{Key: []byte("ctr")})
				if err != nil {
					t.Error(err)
					return
				}
				n := 0
				if g.Found {
					fmt.Sscan(string(g.Value), &n)
				}
				r, err := c.CompareAndSwap(x, &kvpb.CompareAndSwapRequest{Key: []byte("ctr"), Value: []byte(fmt.Sprint(n + 1)),
					Condition: &kvpb.Condition{Kind: kvpb.ConditionKind_CONDITION_VERSION, Version: g.Version}})
				if err != nil {
					t.Error(err)
					return
				}
				if r.Succeeded {
					mu.Lock()
					successes++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	g, err := c.Get(x, &kvpb.GetRequest{Key: []byte("ctr")})
	if err != nil {
		t.Fatal(err)
	}
	if string(g.Value) != fmt.Sprint(successes) || successes == 0 {
		t.Fatalf("counter %q after %d successful CAS", g.Value, successes)
	}
}
