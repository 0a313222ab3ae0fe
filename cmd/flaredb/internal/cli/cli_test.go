package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	kvpb "github.com/flaredb/flaredb/proto/kvpb/v1"
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
func deadAddr(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

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

func TestConnectionError(t *testing.T) {
	r := runCLI(t, "", "--addr", deadAddr(t), "get", "k")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "flaredb: unavailable: cannot connect") {
		t.Fatalf("%+v", r)
	}
	if strings.Count(r.stderr, "flaredb:") != 1 {
		t.Fatalf("stuttering error: %q", r.stderr)
	}
}

// TestSession runs commands in order against one fake server; its versions
// are a counter from 1, so outputs are exact.
func TestSession(t *testing.T) {
	steps := []struct {
		args     []string
		stdin    string
		code     int
		stdout   string // exact, unless contains is set
		contains bool
		stderr   string // contained
	}{
		{args: []string{"get", "a"}, code: ExitNotFound, stderr: "key not found: a"},
		{args: []string{"--json", "get", "a"}, code: ExitNotFound, stdout: `{"key":"a","found":false}` + "\n"},
		{args: []string{"put", "a", "hello"}, stdout: "OK version=1\n"},
		{args: []string{"put", "a", "world", "--prev"}, stdout: "OK version=2 previous: version=1 value=hello\n"},
		{args: []string{"--json", "put", "b", "x", "--prev", "--async"}, stdout: `{"key":"b","version":3,"previous_version":0}` + "\n"},
		{args: []string{"get", "a"}, stdout: "key      a\nvalue    world\nversion  2\n"},
		{args: []string{"get", "--value-only", "a"}, stdout: "world"},
		{args: []string{"--json", "get", "a"}, stdout: `{"key":"a","found":true,"value":"world","version":2}` + "\n"},
		{args: []string{"put", "file", "--value-file", "-"}, stdin: "line1\nline2\n", stdout: "OK version=4\n"},
		{args: []string{"get", "file"}, stdout: "key      file\nvalue    \"line1\\nline2\\n\"\nversion  4\n"},
		{args: []string{"cas", "a", "new", "--if-version", "1"}, code: ExitConditionFailed, stdout: "condition failed (version=1): current: version=2 value=world\n"},
		{args: []string{"--json", "cas", "a", "new", "--if-value", "nope"}, code: ExitConditionFailed, stdout: `{"key":"a","succeeded":false,"version":0,"current_version":2,"current_value":"world"}` + "\n"},
		{args: []string{"cas", "a", "new", "--if-version", "2"}, stdout: "OK version=5 previous: version=2 value=world\n"},
		{args: []string{"cas", "c", "first", "--if-absent"}, stdout: "OK version=6 previous: absent\n"},
		{args: []string{"cas", "c", "--delete", "--if-value", "first"}, stdout: "OK deleted previous: version=6 value=first\n"},
		{args: []string{"cas", "c", "x", "--if-exists"}, code: ExitConditionFailed, stdout: "condition failed (exists): current: absent\n"},
		{args: []string{"cas", "zero", "z", "--if-version", "0"}, stdout: "OK version=7 previous: absent\n"},
		{args: []string{"delete", "zero", "--prev"}, stdout: "deleted previous: version=7 value=z\n"},
		{args: []string{"delete", "zero"}, stdout: "not found (nothing deleted)\n"},
		{args: []string{"--json", "delete", "b"}, stdout: `{"key":"b","deleted":true}` + "\n"},
		{args: []string{"batch", "check@5:a", "put:k1=v=1", "put@absent:k2=v2"}, contains: true,
			stdout: "OK: applied at version 8\n#  OP     KEY  CONDITION  HELD  BEFORE\n1  check  a    version=5  yes   version=5 value=new\n2  put    k1   -          yes   absent\n"},
		{args: []string{"get", "--value-only", "k1"}, stdout: "v=1"},
		{args: []string{"batch", "put:k1=changed", "check@exists:nope", "delete:k2"}, code: ExitConditionFailed, contains: true,
			stdout: "condition failed: nothing written\n"},
		{args: []string{"get", "--value-only", "k1"}, stdout: "v=1"},
		{args: []string{"--json", "batch", "-f", "-"}, stdin: `{"ops": [{"op": "delete", "key": "k2", "if_version": 8}, {"op": "put", "key_base64": "AP8=", "value": "bin"}]}`,
			stdout: `{"succeeded":true,"version":9,"results":[{"op":"delete","key":"k2","condition":"version=8","condition_held":true,"version":8,"value":"v2"},{"op":"put","key_base64":"AP8=","condition":"always","condition_held":true,"version":0}]}` + "\n"},
		{args: []string{"--hex", "get", "00ff"}, stdout: "key      00ff\nvalue    62696e\nversion  9\n"},
		{args: []string{"--base64", "get", "--value-only", "AP8"}, stdout: "Ymlu\n"},
		{args: []string{"get", "\x00\xff"}, stdout: "key      \"\\x00\\xff\"\nvalue    bin\nversion  9\n"},
		{args: []string{"--json", "scan", "--limit", "2"}, stdout: `{"key_base64":"AP8=","value":"bin","version":9}` + "\n" + `{"key":"a","value":"new","version":5}` + "\n"},
		{args: []string{"scan", "a", "k2"}, stdout: "a\tnew\t5\nfile\t\"line1\\nline2\\n\"\t4\nk1\tv=1\t8\n"},
		{args: []string{"scan", "--prefix", "k", "--reverse", "--keys-only"}, stdout: "k1\t8\n"},
		{args: []string{"scan", "x"}, stdout: ""},
		{args: []string{"put", "err/TOO_LARGE", "v"}, code: ExitFailure, stderr: "flaredb: too large: injected TOO_LARGE"},
		{args: []string{"get", "err/NOT_FOUND"}, code: ExitNotFound, stderr: "not found"},
		{args: []string{"status"}, contains: true, stdout: "engine            map  (in-process, protocol 0)\n"},
	}
	for _, mode := range []string{"--unary=false", "--unary"} {
		t.Run(mode, func(t *testing.T) {
			f := startFake(t) // a fresh server: the same versions in each mode
			for i, st := range steps {
				args := append([]string{"--addr", f.addr, mode}, st.args...)
				r := runCLI(t, st.stdin, args...)
				if r.code != st.code {
					t.Fatalf("step %d %q: exit %d, want %d\nstdout: %s\nstderr: %s", i, st.args, r.code, st.code, r.stdout, r.stderr)
				}
				if st.contains {
					if !strings.Contains(r.stdout, st.stdout) {
						t.Fatalf("step %d %q: stdout\n%s\ndoes not contain\n%s", i, st.args, r.stdout, st.stdout)
					}
				} else if r.stdout != st.stdout {
					t.Fatalf("step %d %q: stdout\n%q\nwant\n%q", i, st.args, r.stdout, st.stdout)
				}
				if !strings.Contains(r.stderr, st.stderr) {
					t.Fatalf("step %d %q: stderr %q does not contain %q", i, st.args, r.stderr, st.stderr)
				}
				if st.stderr == "" && r.stderr != "" {
					t.Fatalf("step %d %q: unexpected stderr %q", i, st.args, r.stderr)
				}
			}
		})
	}
}

func TestEnvAddr(t *testing.T) {
	f := startFake(t)
	t.Setenv(EnvAddr, f.addr)
	if r := runCLI(t, "", "put", "k", "v"); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	// --addr wins over the environment.
	if r := runCLI(t, "", "--addr", deadAddr(t), "get", "k"); r.code != ExitFailure {
		t.Fatalf("%+v", r)
	}
}

func TestStatusJSON(t *testing.T) {
	f := startFake(t)
	r := runCLI(t, "", "--addr", f.addr, "--json", "status")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	var st struct {
		Engine string `json:"engine"`
		Limits struct {
			MaxBatchOps uint64 `json:"max_batch_ops"`
		} `json:"limits"`
		Uptime int64 `json:"uptime_seconds"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if st.Engine != "map" || st.Limits.MaxBatchOps != 100 || st.Uptime != 3 {
		t.Fatalf("%+v", st)
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
		{"op": "put", "key": "d", "value": "", "if_absent": false}
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
	} {
		if _, err := parseBatchJSON(encText, []byte(in)); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", in, err, wantErr)
		}
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
	f := startFake(t)
	for _, w := range []string{"put", "get", "cas-low", "cas-high", "scan", "mixed"} {
		for _, unary := range []bool{false, true} {
			args := []string{"--addr", f.addr, "--json", "bench", "--workload", w, "--concurrency", "4",
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
	r := runCLI(t, "", "--addr", f.addr, "bench", "--workload", "cas-high", "--concurrency", "8", "--ops", "50", "--duration", "1m")
	if r.code != 0 || !strings.Contains(r.stdout, "ops       50 (") || !strings.Contains(r.stdout, "latency   p50 ") ||
		!strings.Contains(r.stdout, "conflicts") || !strings.Contains(r.stderr, "loading 8 keys") {
		t.Fatalf("%+v", r)
	}
}

func TestExtraCommand(t *testing.T) {
	f := startFake(t)
	var got string
	extra := &cobra.Command{
		Use:  "hello NAME",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "bad" {
				return UsageErrorf("bad name")
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
	if r := runRoot(t, NewRootCommand(extra), "", "--addr", f.addr, "hello", "world"); r.code != 0 || got != "world" {
		t.Fatalf("%+v", r)
	}
	if r := runRoot(t, NewRootCommand(extra), "", "hello", "bad"); r.code != ExitUsage || !strings.Contains(r.stderr, "bad name") {
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

// TestTLS serves the fake over TLS with a self-signed certificate.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
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
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{data: map[string]*kvpb.KeyValue{}}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	kvpb.RegisterKVServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()

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
