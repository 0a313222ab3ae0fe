package certify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/plugins/certify"
	"github.com/flaredb/flaredb/plugins/host"

	"github.com/flaredb/flaredb/internal/testbin"
)

var bins = map[string]string{}

var binPackages = map[string]testbin.Spec{
	"memory":    {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/memory"},
	"forgetful": {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/forgetful"},
	"badproto":  {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/badproto"},
	"nameless":  {Pkg: "github.com/flaredb/flaredb/plugins/internal/testplugins/nameless"},
	"badger":    {Pkg: "github.com/flaredb/flaredb/cmd/flaredb-badger-plugin"},
	"bbolt":     {Pkg: "github.com/flaredb/flaredb/examples/bboltengine/cmd/flaredb-bbolt-plugin"},
}

func TestMain(m *testing.M) {
	testbin.Main(m, "flaredb-certify-bins-", binPackages, func(dir string) {
		for name := range binPackages {
			bins[name] = filepath.Join(dir, name)
		}
	})
}

// runTimeout bounds a whole certification in these tests, so that a hang
// fails instead of blocking; it is not a timing assertion.
const runTimeout = 5 * time.Minute

func certifyT(t *testing.T, name string, opts certify.Options) certify.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	opts.TempDir = t.TempDir()
	rep, err := certify.Run(ctx, host.Config{Path: bins[name]}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func pluginCase(rep certify.Report, name string) (conformance.CaseResult, bool) {
	for _, c := range rep.PluginCases {
		if c.Name == name {
			return c, true
		}
	}
	return conformance.CaseResult{}, false
}

func table(rep certify.Report) string {
	var b bytes.Buffer
	_ = rep.WriteTable(&b)
	return b.String()
}

func TestCertifyPersistentPlugins(t *testing.T) {
	// The whole suite on the example engine; the plugin cases alone on
	// badger (its conformance as a plugin is run by plugins/host's tests).
	filters := map[string]*regexp.Regexp{"bbolt": nil, "badger": regexp.MustCompile(`^plugin/`)}
	for _, name := range []string{"badger", "bbolt"} {
		t.Run(name, func(t *testing.T) {
			rep := certifyT(t, name, certify.Options{Filter: filters[name], HangTimeout: 2 * time.Second})
			if !rep.OK() {
				t.Fatalf("certification failed:\n%s", table(rep))
			}
			sum, _ := host.SHA256File(bins[name])
			if rep.Plugin.SHA256 != sum || rep.Engine.Name == "" || (filters[name] == nil && len(rep.Cases) == 0) {
				t.Errorf("report: %+v", rep.Plugin)
			}
			for _, c := range []string{"plugin/handshake", "plugin/no-orphans-after-close", "plugin/sigkill-keeps-acknowledged-writes",
				"plugin/protocol-mismatch-refused", "plugin/stray-stdout", "plugin/hang-at-start"} {
				r, ok := pluginCase(rep, c)
				if !ok || r.Status != conformance.StatusPass {
					t.Errorf("%s: %+v", c, r)
				}
			}
			t.Log("\n" + table(rep))
		})
	}
}

func TestCertifyMemoryPluginSkipsDurability(t *testing.T) {
	rep := certifyT(t, "memory", certify.Options{Filter: regexp.MustCompile(`^(plugin/|basic/)`), HangTimeout: 2 * time.Second})
	if !rep.OK() {
		t.Fatalf("certification failed:\n%s", table(rep))
	}
	r, _ := pluginCase(rep, "plugin/sigkill-keeps-acknowledged-writes")
	if r.Status != conformance.StatusSkip || len(r.Messages) == 0 || !strings.Contains(r.Messages[0], "not persistent") {
		t.Errorf("sigkill case: %+v", r)
	}
}

func TestCertifyFailsBrokenPlugins(t *testing.T) {
	t.Run("forgetful", func(t *testing.T) {
		rep := certifyT(t, "forgetful", certify.Options{Filter: regexp.MustCompile(`^(basic/|plugin/handshake)`)})
		if rep.OK() || rep.Failed == 0 {
			t.Fatalf("a plugin that loses keys passed:\n%s", table(rep))
		}
	})
	t.Run("other protocol", func(t *testing.T) {
		rep := certifyT(t, "badproto", certify.Options{Filter: regexp.MustCompile(`^(basic/put|plugin/handshake)`)})
		if rep.OK() {
			t.Fatalf("a plugin of another protocol passed:\n%s", table(rep))
		}
		r, _ := pluginCase(rep, "plugin/handshake")
		if r.Status != conformance.StatusFail || !strings.Contains(strings.Join(r.Messages, " "), "protocol") {
			t.Errorf("handshake case: %+v", r)
		}
		// The plugin started and was refused: the verdict must not
		// blame its start.
		checkHandshakeVerdict(t, rep, "its launch was refused")
	})
	t.Run("wrong self-description", func(t *testing.T) {
		// It starts and serves, but names no engine: the handshake case
		// fails on the description, and nothing else runs.
		rep := certifyT(t, "nameless", certify.Options{Filter: regexp.MustCompile(`^(basic/put|plugin/)`)})
		r, _ := pluginCase(rep, "plugin/handshake")
		if !strings.Contains(strings.Join(r.Messages, " "), "empty name") {
			t.Errorf("handshake case messages %q, want the empty name named", r.Messages)
		}
		checkHandshakeVerdict(t, rep, "the plugin started, but its self-description is wrong")
	})
	if _, err := os.Stat("/bin/true"); err == nil {
		t.Run("not a plugin", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			rep, err := certify.Run(ctx, host.Config{Path: "/bin/true"}, certify.Options{TempDir: t.TempDir(), Filter: regexp.MustCompile(`^(basic/put|plugin/)`)})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("/bin/true passed:\n%s", table(rep))
			}
			// It exits at once: a failed launch, not a slow one.
			checkHandshakeVerdict(t, rep, "could not be launched")
		})
	}
	if _, err := os.Stat("/bin/sleep"); err == nil {
		// A binary that never completes the handshake fails the
		// handshake, and nothing else is run: each case would wait out
		// the start timeout.
		t.Run("hangs before the handshake", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			rep, err := certify.Run(ctx, host.Config{Path: "/bin/sleep", Args: []string{"1000"}, StartTimeout: time.Second},
				certify.Options{TempDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			checkHandshakeVerdict(t, rep, "did not complete the handshake within the start timeout (1s)")
		})
		// Library callers can give a case timeout shorter than the start
		// timeout (the command refuses it): the case timeout, which
		// bounds the launch, is then what the plugin missed.
		t.Run("hangs past the case timeout", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			rep, err := certify.Run(ctx, host.Config{Path: "/bin/sleep", Args: []string{"1000"}},
				certify.Options{TempDir: t.TempDir(), CaseTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			checkHandshakeVerdict(t, rep, "did not complete the handshake within the case timeout (1s)")
		})
	}
	t.Run("missing binary", func(t *testing.T) {
		_, err := certify.Run(context.Background(), host.Config{Path: filepath.Join(t.TempDir(), "nope")}, certify.Options{})
		if err == nil {
			t.Fatal("no error for a missing binary")
		}
	})
}

// checkHandshakeVerdict checks that the handshake case failed, alone (no
// other case ran), and that its last message says so with want as the
// reason; only a plugin that ran out of time may be said not to start.
func checkHandshakeVerdict(t *testing.T, rep certify.Report, want string) {
	t.Helper()
	r, _ := pluginCase(rep, "plugin/handshake")
	if rep.OK() || rep.Failed != 1 || len(rep.Cases) != 0 || len(rep.PluginCases) != 1 || r.Status != conformance.StatusFail || len(r.Messages) < 2 {
		t.Fatalf("a failed handshake, then other cases:\n%s", table(rep))
	}
	last := r.Messages[len(r.Messages)-1]
	if !strings.HasPrefix(last, "the handshake case failed: ") || !strings.Contains(last, want) ||
		!strings.HasSuffix(last, "no other case was run") {
		t.Errorf("handshake verdict %q, want the handshake case failed: ...%s...; no other case was run", last, want)
	}
	if !strings.Contains(want, "timeout") && (strings.Contains(last, "not start") || strings.Contains(last, "start timeout")) {
		t.Errorf("handshake verdict %q: the plugin did not run out of time, it must not be said not to start", last)
	}
}

// root mimics the flaredb CLI's root command: it has a persistent --json
// boolean flag, which makes the conformance command print its JSON report.
func root() *cobra.Command {
	r := &cobra.Command{Use: "flaredb", SilenceErrors: true, SilenceUsage: true}
	r.PersistentFlags().Bool("json", false, "")
	r.PersistentFlags().Duration("timeout", 10*time.Second, "")
	r.AddCommand(certify.NewCommand())
	return r
}

func TestCommand(t *testing.T) {
	jsonFile := filepath.Join(t.TempDir(), "report.json")
	var out, errOut bytes.Buffer
	r := root()
	r.SetArgs([]string{"conformance", "--plugin", bins["memory"], "--run", `^(basic/put|plugin/handshake)`, "--report", jsonFile,
		"--start-timeout", "20s", "--case-timeout", "21s"})
	r.SetOut(&out)
	r.SetErr(&errOut)
	if err := r.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v\n%s%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "pass") || !strings.Contains(out.String(), "OK") || !strings.Contains(out.String(), "sha256:") {
		t.Errorf("table:\n%s", out.String())
	}
	var rep certify.Report
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Plugin.SHA256 == "" || rep.Engine.Name != "memory" || rep.Passed == 0 || rep.Failed != 0 {
		t.Errorf("JSON report: %s", b)
	}

	// A failing plugin, with the report on standard output: with
	// --report -, or with the parent's --json (given before or after the
	// command name).
	for _, args := range [][]string{
		{"conformance", "--plugin", bins["forgetful"], "--run", `^basic/`, "--report", "-"},
		{"--json", "conformance", "--plugin", bins["forgetful"], "--run", `^basic/`},
		{"conformance", "--json", "--plugin", bins["forgetful"], "--run", `^basic/`},
	} {
		out.Reset()
		r = root()
		r.SetArgs(args)
		r.SetOut(&out)
		r.SetErr(&errOut)
		err = r.ExecuteContext(context.Background())
		if !errors.Is(err, certify.ErrFailed) {
			t.Fatalf("%q: failing plugin: %v", args, err)
		}
		rep = certify.Report{}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Failed == 0 {
			t.Errorf("%q: JSON on stdout: %v\n%s", args, err, out.String())
		}
	}

	// Command-line mistakes are usage errors (exit code 2 in the CLI),
	// and run nothing.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"conformance"}, "--plugin"},
		{[]string{"conformance", "--plugin", bins["memory"], "extra"}, `"extra"`},
		{[]string{"conformance", "--plugin", bins["memory"], "--run", "("}, "--run"},
		{[]string{"conformance", "--plugin", bins["memory"], "--option", "novalue"}, "--option"},
		{[]string{"conformance", "--plugin", bins["memory"], "--sha256", "xyz"}, "SHA256"},
		{[]string{"--json", "conformance", "--plugin", bins["memory"], "--report", "r.json"}, "--report"},
		// The case timeout bounds every launch: a start timeout that is
		// not shorter could never apply.
		{[]string{"conformance", "--plugin", bins["memory"], "--start-timeout", "3m"}, "--start-timeout 3m0s must be shorter than --case-timeout 2m0s (the default)"},
		{[]string{"conformance", "--plugin", bins["memory"], "--start-timeout", "1m", "--case-timeout", "1m"}, "--start-timeout 1m0s must be shorter than --case-timeout 1m0s:"},
		{[]string{"conformance", "--plugin", bins["memory"], "--case-timeout", "10s"}, "--start-timeout 30s (the default) must be shorter than --case-timeout 10s:"},
		{[]string{"conformance", "--plugin", bins["memory"], "--hang-timeout", "2m"}, "--hang-timeout 2m0s must be shorter than --case-timeout 2m0s (the default):"},
		{[]string{"conformance", "--plugin", bins["memory"], "--start-timeout", "1s", "--case-timeout", "5s"}, "--hang-timeout 5s (the default) must be shorter than --case-timeout 5s:"},
	} {
		out.Reset()
		r = root()
		r.SetArgs(tc.args)
		r.SetOut(&out)
		r.SetErr(&errOut)
		err := r.ExecuteContext(context.Background())
		var ec interface{ ExitCode() int }
		if !errors.Is(err, certify.ErrUsage) || !errors.As(err, &ec) || ec.ExitCode() != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error naming %s", tc.args, err, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%q: ran:\n%s", tc.args, out.String())
		}
	}

	// A selection that matches no case certifies nothing, and says so.
	out.Reset()
	r = root()
	r.SetArgs([]string{"conformance", "--plugin", bins["memory"], "--run", "^no-such-case$"})
	r.SetOut(&out)
	r.SetErr(&errOut)
	if err := r.ExecuteContext(context.Background()); !errors.Is(err, certify.ErrFailed) || !strings.Contains(err.Error(), "no case passed (0 selected") {
		t.Errorf("empty selection: %v", err)
	}
}

// TestChecksum: a binary whose SHA-256 is not the one given is refused
// before any case runs; the right one (any letter case) is accepted.
func TestChecksum(t *testing.T) {
	sum, err := host.SHA256File(bins["memory"])
	if err != nil {
		t.Fatal(err)
	}
	only := certify.Options{Filter: regexp.MustCompile(`^basic/put`)}
	wrong := strings.Repeat("0", 64)
	rep, err := certify.Run(context.Background(), host.Config{Path: bins["memory"], SHA256: wrong}, only)
	if !errors.Is(err, host.ErrChecksumMismatch) || !strings.Contains(err.Error(), sum) {
		t.Fatalf("wrong checksum: %v", err)
	}
	if len(rep.Cases)+len(rep.PluginCases) != 0 {
		t.Fatalf("cases ran with a wrong checksum: %+v", rep)
	}
	rep, err = certify.Run(context.Background(), host.Config{Path: bins["memory"], SHA256: strings.ToUpper(sum)}, only)
	if err != nil || !rep.OK() {
		t.Fatalf("right checksum: %v %+v", err, rep)
	}
}
