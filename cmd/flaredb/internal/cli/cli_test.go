package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/internal/servertest"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runRoot(t, NewRootCommand(), stdin, args...)
}

func runRoot(t *testing.T, root *cobra.Command, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Execute(context.Background(), root, args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// deadAddr is an address where nothing listens.
func deadAddr(t *testing.T) string { return servertest.DeadAddr(t) }

func TestUsageErrors(t *testing.T) {
	dead := deadAddr(t)
	cases := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"get", "k", "--nope"}, "unknown flag: --nope"},
		{"get no key", []string{"get"}, "accepts 1 arg(s), received 0"},
		{"get two keys", []string{"get", "a", "b"}, "accepts 1 arg(s), received 2"},
		{"get empty key", []string{"get", ""}, "empty key"},
		{"bad hex", []string{"--hex", "get", "zz"}, "is not hex"},
		{"bad base64", []string{"--base64", "get", "!!"}, "is not base64"},
		{"hex and base64", []string{"--hex", "--base64", "get", "00"}, "mutually exclusive"},
		{"value-only json", []string{"--json", "get", "--value-only", "k"}, "mutually exclusive"},
		{"put no value", []string{"put", "k"}, "missing VALUE"},
		{"put value twice", []string{"put", "k", "v", "--value-file", "x"}, "not both"},
		{"cas no condition", []string{"cas", "k", "v"}, "exactly one of"},
		{"cas two conditions", []string{"cas", "k", "v", "--if-absent", "--if-exists"}, "exactly one of"},
		{"cas no value", []string{"cas", "k", "--if-absent"}, "missing NEWVALUE"},
		{"cas delete with value", []string{"cas", "k", "v", "--delete", "--if-exists"}, "--delete takes no NEWVALUE"},
		{"cas bad version", []string{"cas", "k", "v", "--if-version", "x"}, "invalid argument"},
		{"batch nothing", []string{"batch"}, "no operations"},
		{"batch bad op", []string{"batch", "upsert:k=v"}, `unknown operation "upsert"`},
		{"batch no colon", []string{"batch", "put"}, "want OP[@COND]:KEY[=VALUE]"},
		{"batch put no value", []string{"batch", "put:k"}, "put needs KEY=VALUE"},
		{"batch bad cond", []string{"batch", "put@maybe:k=v"}, `unknown condition "maybe"`},
		{"batch args and file", []string{"batch", "put:k=v", "-f", "x"}, "not both"},
		{"batch bad json", []string{"batch", "-f", "-"}, "batch file -"},
		{"scan three args", []string{"scan", "a", "b", "c"}, "accepts at most 2 arg(s)"},
		{"scan prefix and range", []string{"scan", "a", "--prefix", "p"}, "mutually exclusive"},
		{"scan negative limit", []string{"scan", "--limit", "-1"}, "must not be negative"},
		{"scan reversed range", []string{"scan", "b", "a"}, "START b is after END a"},
		{"status args", []string{"status", "x"}, `unknown command "x"`},
		{"bench workload", []string{"bench", "--workload", "nope"}, "unknown workload"},
		{"bench key size", []string{"bench", "--workload", "get", "--keys", "100000", "--key-size", "4"}, "too small"},
		{"bench concurrency", []string{"bench", "--concurrency", "0"}, "--concurrency"},
		{"tls half pair", []string{"--tls-cert", "c.pem", "status"}, "go together"},
		{"bad timeout", []string{"--timeout", "0s", "status"}, "--timeout must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "{", append([]string{"--addr", dead}, tc.args...)...)
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr: %s", r.code, ExitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("stderr %q does not contain %q", r.stderr, tc.stderr)
			}
			if !strings.Contains(r.stderr, "--help' for usage") {
				t.Fatalf("stderr %q has no usage hint", r.stderr)
			}
			if r.stdout != "" {
				t.Fatalf("stdout %q", r.stdout)
			}
		})
	}
}

// failingWriter fails every write, as a full disk or a closed pipe does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestOutputErrors: a result that cannot be written is a failure (exit 1),
// whatever the command's outcome.
func TestOutputErrors(t *testing.T) {
	srv := servertest.Start(t, nil)
	for _, args := range [][]string{
		{"put", "k", "v"},
		{"cas", "k", "w", "--if-exists"}, // succeeds
		{"cas", "k", "x", "--if-absent"}, // condition fails
		{"--json", "cas", "k", "y", "--if-exists"},
		{"get", "k"},
		{"scan"},
	} {
		var errb bytes.Buffer
		code := Execute(context.Background(), NewRootCommand(), append([]string{"--addr", srv.Addr}, args...), strings.NewReader(""), failingWriter{}, &errb)
		if code != ExitFailure || !strings.Contains(errb.String(), "no space left") {
			t.Errorf("%q: exit %d, stderr %q; want exit %d naming the write error", args, code, errb.String(), ExitFailure)
		}
	}
}

// TestTimeoutNamed: a command whose --timeout runs out says so.
func TestTimeoutNamed(t *testing.T) {
	srv := servertest.Start(t, nil)
	for _, args := range [][]string{{"get", "k"}, {"put", "k", "v"}, {"scan"}} {
		r := runCLI(t, "", append([]string{"--addr", srv.Addr, "--timeout", "1ns"}, args...)...)
		if r.code != ExitFailure || !strings.Contains(r.stderr, "deadline exceeded (--timeout 1ns ran out)") {
			t.Errorf("%q: %+v", args, r)
		}
	}
}

func TestConnectionError(t *testing.T) {
	r := runCLI(t, "", "--addr", deadAddr(t), "get", "k")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "flaredb: unavailable: cannot connect") {
		t.Fatalf("%+v", r)
	}
	if strings.Count(r.stderr, "flaredb:") != 1 {
		t.Fatalf("stuttering error: %q", r.stderr)
	}
}

// TestSession runs commands in order against one real server. Its versions
// come from a timestamp oracle, so the expected outputs name them {v1},
// {v2}, ...: a name is bound to the number the first output that shows it
// holds, and stands for it in later steps' arguments, input and output.
func TestSession(t *testing.T) {
	type step struct {
		args     []string
		stdin    string
		code     int
		stdout   string // exact, unless contains is set
		contains bool
		table    bool   // stdout is a table with tab-separated cells, aligned as the CLI aligns them
		stderr   string // a regular expression stderr matches
	}
	tooLong := strings.Repeat("k", int(config.Default().Limits.MaxKeySize)+1)
	steps := []step{
		{args: []string{"get", "a"}, code: ExitNotFound, stderr: "key not found: a"},
		{args: []string{"--json", "get", "a"}, code: ExitNotFound, stdout: `{"key":"a","found":false}` + "\n"},
		{args: []string{"put", "a", "hello"}, stdout: "OK version={v1}\n"},
		{args: []string{"put", "a", "world", "--prev"}, stdout: "OK version={v2} previous: version={v1} value=hello\n"},
		{args: []string{"--json", "put", "b", "x", "--prev", "--async"}, stdout: `{"key":"b","version":{v3},"previous_version":0}` + "\n"},
		{args: []string{"get", "a"}, stdout: "key      a\nvalue    world\nversion  {v2}\n"},
		{args: []string{"get", "--value-only", "a"}, stdout: "world"},
		{args: []string{"--json", "get", "a"}, stdout: `{"key":"a","found":true,"value":"world","version":{v2}}` + "\n"},
		{args: []string{"put", "file", "--value-file", "-"}, stdin: "line1\nline2\n", stdout: "OK version={v4}\n"},
		{args: []string{"get", "file"}, stdout: "key      file\nvalue    \"line1\\nline2\\n\"\nversion  {v4}\n"},
		{args: []string{"cas", "a", "new", "--if-version", "{v1}"}, code: ExitConditionFailed, stdout: "condition failed (version={v1}): current: version={v2} value=world\n"},
		{args: []string{"--json", "cas", "a", "new", "--if-value", "nope"}, code: ExitConditionFailed, stdout: `{"key":"a","succeeded":false,"version":0,"current_version":{v2},"current_value":"world"}` + "\n"},
		{args: []string{"cas", "a", "new", "--if-version", "{v2}"}, stdout: "OK version={v5} previous: version={v2} value=world\n"},
		{args: []string{"cas", "c", "first", "--if-absent"}, stdout: "OK version={v6} previous: absent\n"},
		{args: []string{"cas", "c", "--delete", "--if-value", "first"}, stdout: "OK deleted previous: version={v6} value=first\n"},
		{args: []string{"cas", "c", "x", "--if-exists"}, code: ExitConditionFailed, stdout: "condition failed (exists): current: absent\n"},
		{args: []string{"cas", "zero", "z", "--if-version", "0"}, stdout: "OK version={v7} previous: absent\n"},
		{args: []string{"delete", "zero", "--prev"}, stdout: "deleted previous: version={v7} value=z\n"},
		{args: []string{"delete", "zero"}, stdout: "not found (nothing deleted)\n"},
		{args: []string{"--json", "delete", "b"}, stdout: `{"key":"b","deleted":true}` + "\n"},
		{args: []string{"batch", "check@{v5}:a", "put:k1=v=1", "put@absent:k2=v2"}, table: true,
			stdout: "OK: applied at version {v8}\n#\tOP\tKEY\tCONDITION\tHELD\tBEFORE\n1\tcheck\ta\tversion={v5}\tyes\tversion={v5} value=new\n2\tput\tk1\t-\tyes\tabsent\n3\tput\tk2\tabsent\tyes\tabsent\n"},
		{args: []string{"get", "--value-only", "k1"}, stdout: "v=1"},
		{args: []string{"batch", "put:k1=changed", "check@exists:nope", "delete:k2"}, code: ExitConditionFailed, contains: true,
			stdout: "condition failed: nothing written\n"},
		{args: []string{"get", "--value-only", "k1"}, stdout: "v=1"},
		{args: []string{"--json", "batch", "-f", "-"}, stdin: `{"ops": [{"op": "delete", "key": "k2", "if_version": {v8}}, {"op": "put", "key_base64": "AP8=", "value": "bin"}]}`,
			stdout: `{"succeeded":true,"version":{v9},"results":[{"op":"delete","key":"k2","condition":"version={v8}","condition_held":true,"version":{v8},"value":"v2"},{"op":"put","key_base64":"AP8=","condition":"always","condition_held":true,"version":0}]}` + "\n"},
		{args: []string{"--hex", "get", "00ff"}, stdout: "key      00ff\nvalue    62696e\nversion  {v9}\n"},
		{args: []string{"--base64", "get", "--value-only", "AP8"}, stdout: "Ymlu\n"},
		{args: []string{"get", "\x00\xff"}, stdout: "key      \"\\x00\\xff\"\nvalue    bin\nversion  {v9}\n"},
		{args: []string{"--json", "scan", "--limit", "2"}, stdout: `{"key_base64":"AP8=","value":"bin","version":{v9}}` + "\n" + `{"key":"a","value":"new","version":{v5}}` + "\n"},
		{args: []string{"scan", "a", "k2"}, stdout: "a\tnew\t{v5}\nfile\t\"line1\\nline2\\n\"\t{v4}\nk1\tv=1\t{v8}\n"},
		{args: []string{"scan", "--prefix", "k", "--reverse", "--keys-only"}, stdout: "k1\t{v8}\n"},
		{args: []string{"scan", "x"}, stdout: ""},
		{args: []string{"put", tooLong, "v"}, code: ExitFailure,
			stderr: fmt.Sprintf(`^flaredb: too large: .*key of %d bytes exceeds max_key_size = %d\n$`, len(tooLong), len(tooLong)-1)},
		{args: []string{"get", "gone"}, code: ExitNotFound, stderr: "^flaredb: not found: injected"}, // see FailKey below
	}
	for _, mode := range []string{"--unary=false", "--unary"} {
		t.Run(mode, func(t *testing.T) {
			srv := servertest.Start(t, nil) // a fresh server for each mode
			// An engine that fails a read with NotFound (Get itself reports
			// absence as a result).
			srv.Faults.FailKey([]byte("gone"), fmt.Errorf("injected: %w", engine.ErrNotFound))
			eng := srv.Engine()
			steps := slices.Concat(steps, []step{{args: []string{"status"}, contains: true,
				stdout: fmt.Sprintf("engine            %s %s (in-process, protocol %d)\n", eng.Name, eng.Version, eng.Protocol)}})
			vs := versions{}
			for i, st := range steps {
				args := []string{"--addr", srv.Addr, mode}
				for _, a := range st.args {
					args = append(args, vs.expand(a))
				}
				r := runCLI(t, vs.expand(st.stdin), args...)
				if r.code != st.code {
					t.Fatalf("step %d %q: exit %d, want %d\nstdout: %s\nstderr: %s", i, st.args, r.code, st.code, r.stdout, r.stderr)
				}
				want := st.stdout
				if st.table {
					want = tabulate(t, vs.expand(want))
				}
				if err := vs.match(want, r.stdout, st.contains); err != nil {
					t.Fatalf("step %d %q: %v", i, st.args, err)
				}
				if !regexp.MustCompile(st.stderr).MatchString(r.stderr) {
					t.Fatalf("step %d %q: stderr %q does not match %q", i, st.args, r.stderr, st.stderr)
				}
				if st.stderr == "" && r.stderr != "" {
					t.Fatalf("step %d %q: unexpected stderr %q", i, st.args, r.stderr)
				}
			}
			if len(vs) != 9 {
				t.Fatalf("bound %d versions, want 9", len(vs))
			}
		})
	}
}

// versions binds the placeholders {v1}, {v2}, ... of TestSession to the
// server's versions. The server's versions grow with each write, so
// {v1} < {v2} < ...
type versions map[int]uint64

var placeholder = regexp.MustCompile(`\{v(\d+)\}`)

// expand replaces the bound placeholders in s and leaves the others.
func (vs versions) expand(s string) string {
	return placeholder.ReplaceAllStringFunc(s, func(p string) string {
		n, _ := strconv.Atoi(placeholder.FindStringSubmatch(p)[1])
		if v, ok := vs[n]; ok {
			return strconv.FormatUint(v, 10)
		}
		return p
	})
}

// match reports whether out is want (or contains it, with contains), where
// want's bound placeholders stand for their versions and its unbound ones
// for any number, which it then binds.
func (vs versions) match(want, out string, contains bool) error {
	var re strings.Builder
	var names []int
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(want, -1) {
		re.WriteString(regexp.QuoteMeta(want[last:m[0]]))
		n, _ := strconv.Atoi(want[m[2]:m[3]])
		if v, ok := vs[n]; ok {
			re.WriteString(strconv.FormatUint(v, 10))
		} else {
			re.WriteString(`(\d+)`)
			names = append(names, n)
		}
		last = m[1]
	}
	re.WriteString(regexp.QuoteMeta(want[last:]))
	pattern := re.String()
	if !contains {
		pattern = `\A` + pattern + `\z`
	}
	sub := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if sub == nil {
		return fmt.Errorf("stdout\n%q\ndoes not match\n%q", out, vs.expand(want))
	}
	bound := map[int]uint64{}
	for i, n := range names {
		v, err := strconv.ParseUint(sub[i+1], 10, 64)
		if err != nil {
			return err
		}
		if b, ok := bound[n]; ok && b != v {
			return fmt.Errorf("{v%d} is both %d and %d in %q", n, b, v, out)
		}
		bound[n] = v
	}
	for n, v := range bound {
		for m, w := range vs {
			if m < n && w >= v || m > n && w <= v {
				return fmt.Errorf("version {v%d} = %d is out of order with {v%d} = %d", n, v, m, w)
			}
		}
		vs[n] = v
	}
	return nil
}

// tabulate aligns the tab-separated cells of s as the CLI's tables are
// aligned.
func tabulate(t *testing.T, s string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if _, err := tw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestEnvAddr(t *testing.T) {
	srv := servertest.Start(t, nil)
	t.Setenv(EnvAddr, srv.Addr)
	if r := runCLI(t, "", "put", "k", "v"); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	// --addr wins over the environment.
	if r := runCLI(t, "", "--addr", deadAddr(t), "get", "k"); r.code != ExitFailure {
		t.Fatalf("%+v", r)
	}
}

// TestEmptyAddr: an empty FLAREDB_ADDR or --addr is a usage error, not the
// default address (where a server may well listen).
func TestEmptyAddr(t *testing.T) {
	cases := []struct {
		name   string
		env    *string // nil: unset
		args   []string
		stderr string
	}{
		{"empty env", ptr(""), []string{"get", "k"}, "flaredb: FLAREDB_ADDR is set but empty: unset it or give host:port"},
		{"empty env, bench", ptr(""), []string{"bench", "--ops", "1"}, "FLAREDB_ADDR is set but empty"},
		{"empty flag", nil, []string{"--addr", "", "get", "k"}, "flaredb: --addr is empty: give host:port"},
		{"empty flag=", nil, []string{"--addr=", "put", "k", "v"}, "flaredb: --addr is empty: give host:port"},
		{"empty flag over env", ptr("127.0.0.1:1"), []string{"--addr", "", "status"}, "--addr is empty"},
		{"blank env", ptr(" \t"), []string{"get", "k"}, "FLAREDB_ADDR is set but empty"},
		{"blank flag", nil, []string{"--addr", "  ", "get", "k"}, "--addr is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv(EnvAddr, *tc.env)
			} else {
				t.Setenv(EnvAddr, "") // restores the variable after the test
				if err := os.Unsetenv(EnvAddr); err != nil {
					t.Fatal(err)
				}
			}
			r := runCLI(t, "", tc.args...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.stderr) || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, ExitUsage, tc.stderr)
			}
		})
	}
	// --addr wins over an empty FLAREDB_ADDR.
	srv := servertest.Start(t, nil)
	t.Setenv(EnvAddr, "")
	if r := runCLI(t, "", "--addr", srv.Addr, "put", "k", "v"); r.code != 0 {
		t.Fatalf("--addr with an empty %s: %+v", EnvAddr, r)
	}
}

func ptr[T any](v T) *T { return &v }

func TestStatusJSON(t *testing.T) {
	start := time.Now()
	srv := servertest.Start(t, &servertest.Options{Config: func(c *config.Config) { c.Limits.MaxBatchOps = 100 }})
	r := runCLI(t, "", "--addr", srv.Addr, "--json", "status")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	var st struct {
		Engine string `json:"engine"`
		Mode   string `json:"engine_mode"`
		Limits struct {
			MaxBatchOps uint64 `json:"max_batch_ops"`
		} `json:"limits"`
		Uptime *int64 `json:"uptime_seconds"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if st.Engine != srv.Engine().Name || st.Mode != "in-process" || st.Limits.MaxBatchOps != 100 ||
		st.Uptime == nil || *st.Uptime < 0 || time.Duration(*st.Uptime)*time.Second > time.Since(start) {
		t.Fatalf("%s", r.stdout)
	}
}

func TestParseBatchArg(t *testing.T) {
	cases := []struct {
		arg  string
		enc  encoding
		want string // kind key value cond
		err  string
	}{
		{arg: "put:k=v", want: "put k v always"},
		{arg: "put:k=", want: "put k  always"},
		{arg: "put:a:b=c=d", want: "put a:b c=d always"},
		{arg: "put@absent:k=v", want: "put k v absent"},
		{arg: "put@42:k=v", want: "put k v version=42"},
		{arg: "delete@exists:k", want: "delete k  exists"},
		{arg: "del:k=x", want: "delete k=x  always"},
		{arg: "check@value=a@b:k", want: `check k  value="a@b"`},
		{arg: "check@0:k", want: "check k  version=0"},
		{arg: "put:6b=76", enc: encHex, want: "put k v always"},
		{arg: "check@value=76:6b", enc: encHex, want: `check k  value="v"`},
		{arg: "put:=v", err: "empty key"},
		{arg: "check:", err: "empty key"},
		{arg: "put@-1:k=v", err: "unknown condition"},
		{arg: "get:k", err: "unknown operation"},
		{arg: "put:zz=00", enc: encHex, err: "not hex"},
	}
	for _, tc := range cases {
		op, err := parseBatchArg(tc.enc, tc.arg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.arg, err)
			continue
		}
		got := op.Kind.String() + " " + string(op.Key) + " " + string(op.Value) + " " + op.Cond.String()
		if got != tc.want {
			t.Errorf("%q: got %q want %q", tc.arg, got, tc.want)
		}
	}
}

func TestParseBatchJSON(t *testing.T) {
	ops, err := parseBatchJSON(encText, []byte(`[
		{"op": "put", "key": "a", "value": "1", "if_absent": true},
		{"op": "check", "key": "b", "if_version": 0},
		{"op": "delete", "key_base64": "AP8", "if_exists": true},
		{"op": "check", "key": "c", "if_value_base64": "eA=="},
		{"op": "put", "key": "d", "value": ""}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, op := range ops {
		got = append(got, op.Kind.String()+" "+string(op.Key)+" "+string(op.Value)+" "+op.Cond.String())
	}
	want := []string{"put a 1 absent", "check b  version=0", "delete \x00\xff  exists", `check c  value="x"`, "put d  always"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for in, wantErr := range map[string]string{
		``:                            "empty input",
		`{"ops": []} x`:               "trailing data",
		`{"opz": []}`:                 `unknown member "opz"`,
		`[{"op": "put", "key": "a"}]`: `put needs "value"`,
		`[{"op": "check", "key": "a", "value": "v"}]`:                                   `takes no "value"`,
		`[{"op": "put", "value": "v"}]`:                                                 `missing or empty "key"`,
		`[{"op": "put", "key": "a", "value": "v", "if_absent": true, "if_version": 3}]`: "more than one condition",
		`[{"op": "put", "key": "a", "value": "v", "iff": 1}]`:                           `unknown member "iff"`,
		`[{"op": "merge", "key": "a"}]`:                                                 "unknown operation",
		`[{"op": "check", "key": "a", "if_version": -1}]`:                               "if_version",
		`[{"op": "check", "key": "a", "if_version": null}]`:                             `"if_version" is null`,
		`[{"op": "put", "key": "a", "value": null}]`:                                    `"value" is null`,
		`[{"op": "check", "key": "a", "if_value": null}]`:                               `"if_value" is null`,
		`[{"op": "put", "key": "a", "key_base64": "Yg==", "value": "v"}]`:               `give "key" or "key_base64", not both`,
		`[{"op": "put", "key": "a", "value": "v", "value_base64": "dg=="}]`:             `give "value" or "value_base64", not both`,
		`[{"op": "put", "key": "a", "value": "v", "if_absent": false}]`:                 `op 1: "if_absent": false is not a condition`,
		`[{"op": "check", "key": "a", "if_exists": false}]`:                             `op 1: "if_exists": false is not a condition`,
	} {
		if _, err := parseBatchJSON(encText, []byte(in)); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", in, err, wantErr)
		}
	}
}

// TestBatchFileFalseCondition: "if_absent": false or "if_exists": false in
// a batch file is refused as a usage error naming the operation and the
// member, before connecting: it is not a condition, and reading it as none
// would write unconditionally.
func TestBatchFileFalseCondition(t *testing.T) {
	dead := deadAddr(t) // a connection attempt would fail with exit 1
	cases := []struct {
		name, file, stderr string
	}{
		{"if_exists false", `[{"op": "put", "key": "a", "value": "1"}, {"op": "check", "key": "b", "if_version": 3},
			{"op": "put", "key": "c", "value": "2", "if_exists": false}]`,
			`flaredb: batch file -: op 3: "if_exists": false is not a condition: leave it out for no condition`},
		{"if_absent false", `{"ops": [{"op": "delete", "key": "a", "if_absent": false}]}`,
			`flaredb: batch file -: op 1: "if_absent": false is not a condition: leave it out for no condition`},
		{"false beside a condition", `[{"op": "put", "key": "a", "value": "1", "if_version": 7, "if_absent": false}]`,
			`flaredb: batch file -: op 1: "if_absent": false is not a condition`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.file, "--addr", dead, "batch", "-f", "-")
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.stderr) || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, ExitUsage, tc.stderr)
			}
		})
	}
	// true is still a condition.
	srv := servertest.Start(t, nil)
	r := runCLI(t, `[{"op": "put", "key": "a", "value": "1", "if_exists": true}]`, "--addr", srv.Addr, "batch", "-f", "-")
	if r.code != ExitConditionFailed {
		t.Fatalf("if_exists true on an absent key: %+v", r)
	}
}

func TestDisplayAndJSONBytes(t *testing.T) {
	cases := []struct {
		enc     encoding
		in      string
		display string
		field   string
	}{
		{encText, "plain text", "plain text", `{"v":"plain text"}`},
		{encText, "tab\there", `"tab\there"`, `{"v":"tab\there"}`},
		{encText, "", `""`, `{"v":""}`},
		{encText, " padded", `" padded"`, `{"v":" padded"}`},
		{encText, "\xff\x00", `"\xff\x00"`, `{"v_base64":"/wA="}`},
		{encText, "héllo", "héllo", `{"v":"héllo"}`},
		{encHex, "\xff\x00", "ff00", `{"v":"ff00"}`},
		{encBase64, "\xff\x00", "/wA=", `{"v":"/wA="}`},
	}
	for _, tc := range cases {
		if got := tc.enc.display([]byte(tc.in)); got != tc.display {
			t.Errorf("display(%q) = %s, want %s", tc.in, got, tc.display)
		}
		b, _ := json.Marshal(object{tc.enc.bytesField("v", []byte(tc.in))})
		if string(b) != tc.field {
			t.Errorf("json(%q) = %s, want %s", tc.in, b, tc.field)
		}
	}
	if got := prefixEnd([]byte("ab\xff")); string(got) != "ac" {
		t.Errorf("prefixEnd = %q", got)
	}
	if got := prefixEnd([]byte("\xff\xff")); got != nil {
		t.Errorf("prefixEnd all 0xff = %q", got)
	}
}

func TestBench(t *testing.T) {
	srv := servertest.Start(t, nil)
	for _, w := range []string{"put", "get", "cas-low", "cas-high", "scan", "mixed"} {
		for _, unary := range []bool{false, true} {
			args := []string{"--addr", srv.Addr, "--json", "bench", "--workload", w, "--concurrency", "4",
				"--duration", "1m", "--ops", "60", "--keys", "20", "--value-size", "8", "--key-size", "6", "--scan-limit", "5"}
			if unary {
				args = append(args, "--unary", "--warmup=1ms")
			}
			r := runCLI(t, "", args...)
			if r.code != 0 {
				t.Fatalf("%s: %+v", w, r)
			}
			var rep struct {
				Workload  string             `json:"workload"`
				Transport string             `json:"transport"`
				Ops       int64              `json:"ops"`
				Errors    int64              `json:"errors"`
				Conflicts int64              `json:"cas_conflicts"`
				CASOK     int64              `json:"cas_succeeded"`
				OpsPerSec float64            `json:"ops_per_second"`
				Latency   map[string]float64 `json:"latency_us"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("%s: %v: %s", w, err, r.stdout)
			}
			if rep.Workload != w || rep.Ops != 60 || rep.Errors != 0 || rep.OpsPerSec <= 0 {
				t.Fatalf("%s: %+v", w, rep)
			}
			if want := map[bool]string{true: "unary", false: "stream"}[unary]; rep.Transport != want {
				t.Fatalf("%s: transport %s", w, rep.Transport)
			}
			if strings.HasPrefix(w, "cas") && rep.Conflicts+rep.CASOK != rep.Ops {
				t.Fatalf("%s: %d conflicts + %d successes != %d ops", w, rep.Conflicts, rep.CASOK, rep.Ops)
			}
			for _, p := range []string{"p50", "p90", "p99", "p99.9", "max"} {
				if rep.Latency[p] < 1 {
					t.Fatalf("%s: latency %s = %v", w, p, rep.Latency[p])
				}
			}
			if rep.Latency["p50"] > rep.Latency["max"] {
				t.Fatalf("%s: p50 > max", w)
			}
		}
	}
	// Human report.
	r := runCLI(t, "", "--addr", srv.Addr, "bench", "--workload", "cas-high", "--concurrency", "8", "--ops", "50", "--duration", "1m")
	if r.code != 0 || !strings.Contains(r.stdout, "ops       50 (") || !strings.Contains(r.stdout, "latency   p50 ") ||
		!strings.Contains(r.stdout, "conflicts") || !strings.Contains(r.stderr, "loading 8 keys") {
		t.Fatalf("%+v", r)
	}
}

func TestExtraCommand(t *testing.T) {
	srv := servertest.Start(t, nil)
	var got string
	extra := &cobra.Command{
		Use:  "hello NAME",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "bad":
				return UsageErrorf("bad name")
			case "coded":
				return fmt.Errorf("wrapped: %w", codedError{code: 3})
			}
			c, err := Dial(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Put(cmd.Context(), []byte("hello"), []byte(args[0]))
			got = args[0]
			return err
		},
	}
	if r := runRoot(t, NewRootCommand(extra), "", "--addr", srv.Addr, "hello", "world"); r.code != 0 || got != "world" {
		t.Fatalf("%+v", r)
	}
	if r := runCLI(t, "", "--addr", srv.Addr, "get", "--value-only", "hello"); r.code != 0 || r.stdout != "world" {
		t.Fatalf("%+v", r)
	}
	if r := runRoot(t, NewRootCommand(extra), "", "hello", "bad"); r.code != ExitUsage || !strings.Contains(r.stderr, "bad name") {
		t.Fatalf("%+v", r)
	}
	// An error from another package gives its exit code through an
	// ExitCode method.
	if r := runRoot(t, NewRootCommand(extra), "", "hello", "coded"); r.code != 3 || !strings.Contains(r.stderr, "wrapped: coded") {
		t.Fatalf("%+v", r)
	}
	if r := runCLI(t, "", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Exit codes:") || !strings.Contains(r.stdout, "4  key not found") {
		t.Fatalf("%+v", r)
	}
	if r := runCLI(t, "", "batch", "--help"); r.code != 0 || !strings.Contains(r.stdout, "OP[@COND]:KEY[=VALUE]") {
		t.Fatalf("%+v", r)
	}
	if r := runCLI(t, ""); r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
		t.Fatalf("%+v", r)
	}
}

// codedError is an error with an exit code of its own.
type codedError struct{ code int }

func (e codedError) Error() string { return "coded" }
func (e codedError) ExitCode() int { return e.code }

// selfSigned writes a self-signed server certificate for 127.0.0.1 and
// flaredb.test, which is also its own CA, and its key into dir.
func selfSigned(t *testing.T, dir string) (caFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "flaredb-test"},
		DNSNames:              []string{"flaredb.test"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	caFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, keyFile
}

// startTLS starts a server with TLS and a self-signed certificate; it
// returns its address and the certificate's file.
func startTLS(t *testing.T) (addr, caFile string) {
	t.Helper()
	caFile, keyFile := selfSigned(t, t.TempDir())
	return servertest.Start(t, &servertest.Options{Config: func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = caFile, keyFile
	}}).Addr, caFile
}

// TestTLS runs the server with TLS and a self-signed certificate.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	addr, caFile := startTLS(t)

	if r := runCLI(t, "", "--addr", addr, "--tls-ca", caFile, "put", "k", "v"); r.code != 0 {
		t.Fatalf("TLS put: %+v", r)
	}
	if r := runCLI(t, "", "--addr", addr, "--tls-ca", caFile, "--tls-server-name", "flaredb.test", "get", "--value-only", "k"); r.code != 0 || r.stdout != "v" {
		t.Fatalf("TLS get: %+v", r)
	}
	// Without the CA the certificate is not trusted; plaintext fails too.
	if r := runCLI(t, "", "--addr", addr, "--tls", "get", "k"); r.code != ExitFailure {
		t.Fatalf("untrusted: %+v", r)
	}
	if r := runCLI(t, "", "--addr", addr, "--timeout", "2s", "get", "k"); r.code != ExitFailure {
		t.Fatalf("plaintext to TLS: %+v", r)
	}
	if r := runCLI(t, "", "--addr", addr, "--tls-ca", filepath.Join(dir, "missing.pem"), "get", "k"); r.code != ExitFailure || !strings.Contains(r.stderr, "--tls-ca") {
		t.Fatalf("missing CA: %+v", r)
	}
}

// TestTLSMismatchHint: a plaintext client talking to a TLS server, or a TLS
// client talking to a plaintext server, fails with a hint naming the TLS
// flags; other connection failures get no such hint.
func TestTLSMismatchHint(t *testing.T) {
	tlsAddr, caFile := startTLS(t)
	plainAddr := servertest.Start(t, nil).Addr
	// An HTTP/1 server, like the metrics port next to the gRPC one.
	web := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(web.Close)
	webAddr := strings.TrimPrefix(web.URL, "http://")
	const toHTTP = "(an HTTP/1 server answered: is this the FlareDB gRPC address (listen), not metrics_listen or another service?)"
	const toTLS = "(is the server using TLS? pass --tls-ca FILE with its CA certificate, or --tls to verify it against the system roots; add --tls-cert and --tls-key if it asks for a client certificate)"
	const toPlain = "(is the server using plaintext? leave out --tls and the --tls-* flags)"
	cases := []struct {
		name string
		args []string
		hint string // "": none
	}{
		{"plaintext to TLS, get", []string{"--addr", tlsAddr, "get", "k"}, toTLS},
		{"plaintext to TLS, unary put", []string{"--addr", tlsAddr, "--unary", "put", "k", "v"}, toTLS},
		{"plaintext to TLS, status", []string{"--addr", tlsAddr, "status"}, toTLS},
		{"plaintext to TLS, bench", []string{"--addr", tlsAddr, "bench", "--ops", "1"}, toTLS},
		{"TLS with CA to plaintext", []string{"--addr", plainAddr, "--tls-ca", caFile, "get", "k"}, toPlain},
		{"--tls to plaintext, unary", []string{"--addr", plainAddr, "--tls", "--unary", "scan"}, toPlain},
		{"--tls to plaintext, bench", []string{"--addr", plainAddr, "--tls", "bench", "--ops", "1"}, toPlain},
		{"plaintext to HTTP/1", []string{"--addr", webAddr, "get", "k"}, toHTTP},
		{"plaintext to HTTP/1, unary", []string{"--addr", webAddr, "--unary", "put", "k", "v"}, toHTTP},
		{"untrusted certificate", []string{"--addr", tlsAddr, "--tls", "get", "k"}, ""},
		{"nothing listening", []string{"--addr", deadAddr(t), "get", "k"}, ""},
		{"nothing listening, TLS", []string{"--addr", deadAddr(t), "--tls", "get", "k"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"--timeout", "30s"}, tc.args...)...)
			if r.code != ExitFailure || !strings.HasPrefix(r.stderr, "flaredb: unavailable: cannot connect to ") {
				t.Fatalf("%+v", r)
			}
			if tc.hint != "" && !strings.HasSuffix(r.stderr, " "+tc.hint+"\n") {
				t.Fatalf("stderr %q does not end with the hint %q", r.stderr, tc.hint)
			}
			if tc.hint == "" && (strings.Contains(r.stderr, "is the server using") || strings.Contains(r.stderr, "HTTP/1 server")) {
				t.Fatalf("stderr %q: a hint for a failure that is not a TLS mismatch", r.stderr)
			}
			if strings.Count(r.stderr, "flaredb:") != 1 {
				t.Fatalf("stuttering error: %q", r.stderr)
			}
		})
	}
}

// TestScanServerLimit: a server that cuts scans at max_scan_limit entries
// does not cut the listing short: it goes on from after the last key (in
// either direction) until the range or --limit ends, and says so.
func TestScanServerLimit(t *testing.T) {
	srv := servertest.Start(t, &servertest.Options{Config: func(c *config.Config) { c.Limits.MaxScanLimit = 3 }})
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		if r := runCLI(t, "", "--addr", srv.Addr, "put", k, "v"+k); r.code != 0 {
			t.Fatalf("put %s: %+v", k, r)
		}
	}
	cases := []struct {
		args  []string
		keys  string
		scans int // 0: one scan, no note
	}{
		{[]string{"scan", "--keys-only"}, "abcdefg", 3},
		{[]string{"scan", "--keys-only", "--reverse"}, "gfedcba", 3},
		{[]string{"scan", "--keys-only", "--limit", "4"}, "abcd", 2},
		{[]string{"scan", "--keys-only", "--limit", "2"}, "ab", 0},
		{[]string{"scan", "--keys-only", "--limit", "3"}, "abc", 0},
		{[]string{"scan", "--keys-only", "b", "f"}, "bcde", 2},
		{[]string{"scan", "--keys-only", "--reverse", "b", "f"}, "edcb", 2},
		{[]string{"scan", "--keys-only", "e"}, "efg", 0}, // exactly the limit, then nothing
	}
	for _, tc := range cases {
		r := runCLI(t, "", append([]string{"--addr", srv.Addr}, tc.args...)...)
		if r.code != 0 {
			t.Fatalf("%q: %+v", tc.args, r)
		}
		var keys strings.Builder
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			k, _, _ := strings.Cut(line, "\t")
			keys.WriteString(k)
		}
		if keys.String() != tc.keys {
			t.Errorf("%q: keys %q, want %q", tc.args, keys.String(), tc.keys)
		}
		note := fmt.Sprintf("read in %d scans", tc.scans)
		if tc.scans == 0 && strings.Contains(r.stderr, "max_scan_limit") || tc.scans > 0 && !strings.Contains(r.stderr, note) {
			t.Errorf("%q: stderr %q, want %s", tc.args, r.stderr, map[bool]string{true: "no note", false: note}[tc.scans == 0])
		}
	}
}
