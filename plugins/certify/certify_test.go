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
		})
	}
	t.Run("missing binary", func(t *testing.T) {
		_, err := certify.Run(context.Background(), host.Config{Path: filepath.Join(t.TempDir(), "nope")}, certify.Options{})
		if err == nil {
			t.Fatal("no error for a missing binary")
		}
	})
}

// root mimics the flaredb CLI's root command: it has a persistent --json
// boolean flag, which the conformance command's --json FILE shadows.
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
	r.SetArgs([]string{"conformance", "--plugin", bins["memory"], "--run", `^(basic/put|plugin/handshake)`, "--json", jsonFile})
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

	out.Reset()
	r = root()
	r.SetArgs([]string{"conformance", "--plugin", bins["forgetful"], "--run", `^basic/`, "--json", "-"})
	r.SetOut(&out)
	r.SetErr(&errOut)
	err = r.ExecuteContext(context.Background())
	if !errors.Is(err, certify.ErrFailed) {
		t.Fatalf("failing plugin: %v", err)
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Failed == 0 {
		t.Errorf("JSON on stdout: %v\n%s", err, out.String())
	}

	r = root()
	r.SetArgs([]string{"conformance"})
	r.SetOut(&out)
	r.SetErr(&errOut)
	if err := r.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "--plugin") {
		t.Errorf("without --plugin: %v", err)
	}
}
