package rocksdbengine

import (
	"errors"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
)

func TestValidateListsEveryViolation(t *testing.T) {
	if err := (*Options)(nil).Validate(); err != nil {
		t.Fatalf("nil options: %v", err)
	}
	if err := (&Options{}).Validate(); err != nil {
		t.Fatalf("zero options: %v", err)
	}
	err := (&Options{WriteBufferSize: 10, MaxOpenFiles: 3, MaxBackgroundJobs: -1, Compression: "lzma", BloomBitsPerKey: 1000, KeepLogFileNum: -1}).Validate()
	if !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("Validate = %v, want ErrInvalidArgument", err)
	}
	for _, field := range []string{"WriteBufferSize", "MaxOpenFiles", "MaxBackgroundJobs", "Compression", "BloomBitsPerKey", "KeepLogFileNum"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate error does not mention %s: %v", field, err)
		}
	}
}
