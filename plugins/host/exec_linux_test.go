//go:build linux

package host

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSnapshotBinarySealed: the copy of the binary holds its bytes, is
// hashed as it is copied, and refuses every write, also when the kernel
// refuses F_SEAL_WRITE as busy (F_SEAL_FUTURE_WRITE is added instead); a
// copy that cannot be sealed at all is an error.
func TestSnapshotBinarySealed(t *testing.T) {
	content := bytes.Repeat([]byte("flaredb plugin bytes "), 10000)
	for _, tc := range []struct {
		name      string
		busy      bool // the kernel refuses F_SEAL_WRITE with EBUSY
		noFuture  bool // and refuses F_SEAL_FUTURE_WRITE too
		wantSeal  int  // the write seal the copy must carry
		wantError bool
	}{
		{name: "sealed", wantSeal: unix.F_SEAL_WRITE},
		{name: "write seal busy", busy: true, wantSeal: unix.F_SEAL_FUTURE_WRITE},
		{name: "no seal possible", busy: true, noFuture: true, wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := addSeals
			t.Cleanup(func() { addSeals = orig })
			addSeals = func(fd uintptr, seals int) error {
				if tc.busy && seals&unix.F_SEAL_WRITE != 0 {
					return unix.EBUSY
				}
				if tc.noFuture && seals&unix.F_SEAL_FUTURE_WRITE != 0 {
					return unix.EINVAL
				}
				return orig(fd, seals)
			}
			path := filepath.Join(t.TempDir(), "bin")
			if err := os.WriteFile(path, content, 0o755); err != nil {
				t.Fatal(err)
			}
			src, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			mem, err := snapshotBinary(src, h)
			if tc.wantError {
				if err == nil || !errors.Is(err, unix.EBUSY) {
					mem.Close()
					t.Fatalf("snapshotBinary: %v, want an error naming EBUSY", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			if want := sha256.Sum256(content); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Error("the hash is not of the binary's bytes")
			}
			got := make([]byte, len(content)+1)
			if n, _ := mem.ReadAt(got, 0); !bytes.Equal(got[:n], content) {
				t.Errorf("the copy holds %d bytes, not the binary's %d", n, len(content))
			}
			seals, err := unix.FcntlInt(mem.Fd(), unix.F_GET_SEALS, 0)
			if err != nil {
				t.Fatal(err)
			}
			if seals&tc.wantSeal == 0 || seals&unix.F_SEAL_SEAL == 0 || seals&unix.F_SEAL_SHRINK == 0 || seals&unix.F_SEAL_GROW == 0 {
				t.Errorf("seals %#x, want %#x and seal, shrink, grow", seals, tc.wantSeal)
			}
			// Writing through another descriptor of the same file fails.
			w, err := os.OpenFile(filepath.Join("/proc/self/fd", strconv.Itoa(int(mem.Fd()))), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if _, err := w.WriteAt([]byte("x"), 0); err == nil {
				t.Error("a write to the sealed copy succeeded")
			}
		})
	}
}
