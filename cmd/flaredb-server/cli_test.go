package main_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLI drives every CLI command against the real server, for each
// engine, checking output, --json and exit codes.
func TestCLI(t *testing.T) {
	for _, mode := range engineModes {
		t.Run(mode, func(t *testing.T) {
			s := startServer(t, t.TempDir(), append(engineArgs(mode), "--max-value-size", "1KiB")...)
			eng := strings.TrimSuffix(mode, "-plugin")
			type step struct {
				args []string
				code int
				out  string // substring of stdout ("" = don't care)
			}
			steps := []step{
				{[]string{"get", "k"}, 4, ""},
				{[]string{"put", "k", "hello"}, 0, ""},
				{[]string{"get", "k", "--value-only"}, 0, "hello"},
				{[]string{"cas", "k", "world", "--if-value", "nope"}, 3, ""},
				{[]string{"cas", "k", "world", "--if-value", "hello"}, 0, ""},
				{[]string{"get", "k", "--value-only"}, 0, "world"},
				{[]string{"cas", "k2", "x", "--if-absent"}, 0, ""},
				{[]string{"cas", "k2", "y", "--if-absent"}, 3, ""},
				{[]string{"batch", "put@absent:k3=v3", "check@exists:k"}, 0, ""},
				{[]string{"batch", "put:k4=v4", "check@absent:k"}, 3, ""},
				{[]string{"get", "k4"}, 4, ""},
				{[]string{"scan", "k", "l"}, 0, "k3"},
				{[]string{"delete", "k2"}, 0, ""},
				{[]string{"get", "k2"}, 4, ""},
				{[]string{"put", "", "v"}, 2, ""}, // refused before it is sent
				{[]string{"put", "big", strings.Repeat("x", 1025)}, 1, ""},
				{[]string{"status"}, 0, eng},
				{[]string{"cas", "k"}, 2, ""},
			}
			for _, st := range steps {
				out, errOut, code := s.cli(st.args...)
				if code != st.code {
					t.Fatalf("flaredb %q: exit %d, want %d\nstdout: %s\nstderr: %s", st.args, code, st.code, out, errOut)
				}
				if st.out != "" && !strings.Contains(out, st.out) {
					t.Fatalf("flaredb %q: stdout %q lacks %q", st.args, out, st.out)
				}
				if code == 1 && !strings.HasPrefix(errOut, "flaredb: ") {
					t.Fatalf("flaredb %q failed without a message: stderr %q", st.args, errOut)
				}
			}
			// Machine-readable output.
			out, _, code := s.cli("--json", "get", "k")
			var got map[string]any
			if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got["value"] != "world" {
				t.Fatalf("get --json: %d %q", code, out)
			}
			out, _, code = s.cli("--json", "status")
			if code != 0 || !strings.Contains(out, `"engine"`) {
				t.Fatalf("status --json: %d %q", code, out)
			}
			// A short bench run against the real server.
			out, errOut, code := s.cli("--json", "bench", "--workload", "cas-high", "--concurrency", "8", "--ops", "400", "--keys", "4", "--duration", "30s")
			if code != 0 {
				t.Fatalf("bench: exit %d\n%s\n%s", code, out, errOut)
			}
			var rep map[string]any
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("bench --json output: %v\n%s", err, out)
			}
			s.stop()
		})
	}
}
