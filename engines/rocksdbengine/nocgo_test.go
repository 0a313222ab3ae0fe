//go:build !cgo

package rocksdbengine

import (
	"errors"
	"strings"
	"testing"

	"github.com/flaredb/flaredb/core/engine"
)

func TestOpenWithoutCgoIsUnsupported(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenStore(dir, nil); !errors.Is(err, engine.ErrUnsupported) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("OpenStore without cgo = %v, want ErrUnsupported naming %s", err, dir)
	}
	_, err := Open(dir, nil)
	if !errors.Is(err, engine.ErrUnsupported) {
		t.Fatalf("Open without cgo = %v, want ErrUnsupported", err)
	}
	for _, hint := range []string{"not compiled", "CGO_ENABLED=1", "librocksdb-dev", "plugin"} {
		if !strings.Contains(err.Error(), hint) {
			t.Errorf("error %q does not mention %q", err, hint)
		}
	}
	// Bad options are still reported as such.
	if _, err := Open(dir, &Options{Compression: "brotli"}); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("Open with bad options without cgo = %v, want ErrInvalidArgument", err)
	}
}
