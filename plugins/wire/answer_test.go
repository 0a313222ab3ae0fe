package wire

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/engines/memengine"
)

// TestAnswerTooLarge: an answer over the message limit is an error, on the
// Stream and with unary calls. A Read's, or an Apply's that changed
// nothing, is ErrTooLarge (the contract's "nothing applied": the caller may
// retry the writes one by one); an Apply's whose writes were applied must
// not be ErrTooLarge, and the writes stay applied.
func TestAnswerTooLarge(t *testing.T) {
	big := strings.Repeat("x", 2000)
	keys := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	for _, unary := range []bool{false, true} {
		t.Run(fmt.Sprintf("unary=%v", unary), func(t *testing.T) {
			ctx := ctxT(t)
			mem := memengine.New()
			srv := NewServer(mem)
			srv.maxAnswer = 5000 // two previous values fit, three do not
			_, addr := serveOn(t, srv)
			c := NewClient(dial(t, addr))
			c.noStream.Store(unary)
			for i, k := range keys {
				if _, err := mem.Apply(ctx, []engine.Write{put(string(k), big, uint64(i+1))}, engine.ApplyOptions{}); err != nil {
					t.Fatal(err)
				}
			}

			if _, err := c.Read(ctx, keys); !errors.Is(err, engine.ErrTooLarge) {
				t.Errorf("read of three large values: %v, want ErrTooLarge", err)
			}
			if es, err := c.Read(ctx, keys[:2]); err != nil || len(es) != 2 {
				t.Errorf("read of two: %v", err)
			}

			// Conditions that fail: nothing changes, ErrTooLarge.
			var cas []engine.Write
			for _, k := range keys {
				cas = append(cas, engine.Write{Kind: engine.OpDelete, Key: k, Cond: engine.Condition{Kind: engine.CondVersion, Version: 99}})
			}
			if _, err := c.Apply(ctx, cas, engine.ApplyOptions{}); !errors.Is(err, engine.ErrTooLarge) {
				t.Errorf("failed CAS deletes with a large answer: %v, want ErrTooLarge", err)
			}
			if es, _ := mem.Read(ctx, keys); es[0].Version != 1 || es[1].Version != 2 || es[2].Version != 3 {
				t.Fatalf("after failed CAS deletes: %+v, want all three unchanged", es)
			}

			// Deletes that apply: the answer is lost, the deletes are not.
			var dels []engine.Write
			for _, k := range keys {
				dels = append(dels, engine.Write{Kind: engine.OpDelete, Key: k})
			}
			_, err := c.Apply(ctx, dels, engine.ApplyOptions{})
			if err == nil || errors.Is(err, engine.ErrTooLarge) || !errors.Is(err, engine.ErrInternal) || !strings.Contains(err.Error(), "applied") {
				t.Errorf("applied deletes with a large answer: %v, want ErrInternal saying they were applied (not ErrTooLarge)", err)
			}
			es, err := mem.Read(ctx, keys)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range es {
				if e.Version != 0 {
					t.Errorf("key %s after the applied deletes: version %d, want deleted", keys[i], e.Version)
				}
			}
		})
	}
}
