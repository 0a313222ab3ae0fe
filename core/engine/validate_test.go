package engine_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
)

func TestWriteSize(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 100)
	for _, c := range []struct {
		name string
		w    engine.Write
		want int
	}{
		{"put", engine.Write{Kind: engine.OpPut, Key: []byte("key"), Value: big, Version: 1}, 103},
		{"put with an empty value", engine.Write{Kind: engine.OpPut, Key: []byte("key"), Version: 1}, 3},
		{"delete ignores Value", engine.Write{Kind: engine.OpDelete, Key: []byte("key"), Value: big}, 3},
		{"check ignores Value", engine.Write{Kind: engine.OpCheck, Key: []byte("key"), Value: big}, 3},
		{"CondValue counts", engine.Write{Kind: engine.OpCheck, Key: []byte("key"),
			Cond: engine.Condition{Kind: engine.CondValue, Value: big}}, 103},
		{"put with CondValue counts both", engine.Write{Kind: engine.OpPut, Key: []byte("key"), Value: big, Version: 1,
			Cond: engine.Condition{Kind: engine.CondValue, Value: big}}, 203},
		{"other conditions ignore Value", engine.Write{Kind: engine.OpDelete, Key: []byte("key"),
			Cond: engine.Condition{Kind: engine.CondVersion, Version: 3, Value: big}}, 3},
	} {
		if got := engine.WriteSize(c.w); got != c.want {
			t.Errorf("%s: WriteSize = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestValidateWritesBatchSize: MaxBatchSize counts a put's value and a
// CondValue's value, never the Value a delete or a check carries (the
// contract ignores it) nor the Value of another condition kind.
func TestValidateWritesBatchSize(t *testing.T) {
	l := engine.Limits{MaxBatchSize: 20}
	big := bytes.Repeat([]byte("v"), 1000)
	ok := [][]engine.Write{
		{{Kind: engine.OpDelete, Key: []byte("a"), Value: big}},
		{{Kind: engine.OpCheck, Key: []byte("a"), Value: big}},
		{{Kind: engine.OpDelete, Key: []byte("a"), Value: big}, {Kind: engine.OpCheck, Key: []byte("b"), Value: big}},
		{{Kind: engine.OpCheck, Key: []byte("a"), Cond: engine.Condition{Kind: engine.CondNone, Value: big}}},
		{{Kind: engine.OpDelete, Key: []byte("a"), Cond: engine.Condition{Kind: engine.CondExists, Value: big}}},
		{{Kind: engine.OpPut, Key: []byte("a"), Value: bytes.Repeat([]byte("v"), 19), Version: 1}},
		{{Kind: engine.OpPut, Key: []byte("a"), Value: []byte("0123456789"), Version: 1},
			{Kind: engine.OpDelete, Key: []byte("b"), Value: big},
			{Kind: engine.OpCheck, Key: []byte("c"), Cond: engine.Condition{Kind: engine.CondValue, Value: []byte("xyzxyz")}}},
	}
	for i, ws := range ok {
		if err := engine.ValidateWrites(ws, l); err != nil {
			t.Errorf("call %d: %v, want nil: ignored values must not count toward MaxBatchSize", i, err)
		}
	}
	tooLarge := [][]engine.Write{
		{{Kind: engine.OpPut, Key: []byte("a"), Value: bytes.Repeat([]byte("v"), 20), Version: 1}},
		{{Kind: engine.OpCheck, Key: []byte("a"), Cond: engine.Condition{Kind: engine.CondValue, Value: bytes.Repeat([]byte("v"), 20)}}},
		{{Kind: engine.OpPut, Key: []byte("a"), Value: []byte("0123456789"), Version: 1},
			{Kind: engine.OpDelete, Key: []byte("b"), Cond: engine.Condition{Kind: engine.CondValue, Value: []byte("0123456789")}}},
	}
	for i, ws := range tooLarge {
		if err := engine.ValidateWrites(ws, l); !errors.Is(err, engine.ErrTooLarge) {
			t.Errorf("call %d: %v, want ErrTooLarge", i, err)
		}
	}
}
