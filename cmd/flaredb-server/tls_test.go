package main_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flaredb test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kb)
	}
	p := pki{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t, t.TempDir())
	s := startServer(t, t.TempDir(), "--engine", "memory",
		"--tls-cert", p.serverCert, "--tls-key", p.serverKey, "--tls-client-ca", p.ca)

	// With a client certificate signed by the CA: works.
	if out, errOut, code := s.cli("--tls-ca", p.ca, "--tls-cert", p.clientCert, "--tls-key", p.clientKey, "put", "k", "v"); code != 0 {
		t.Fatalf("mTLS put: %d %s %s", code, out, errOut)
	}
	out, _, code := s.cli("--tls-ca", p.ca, "--tls-cert", p.clientCert, "--tls-key", p.clientKey, "get", "k", "--value-only")
	if code != 0 || strings.TrimSpace(out) != "v" {
		t.Fatalf("mTLS get: %d %q", code, out)
	}
	// Without a client certificate, or in plaintext: refused.
	if _, _, code := s.cli("--tls-ca", p.ca, "get", "k"); code == 0 {
		t.Fatal("a client without a certificate was served")
	}
	if _, _, code := s.cli("get", "k"); code == 0 {
		t.Fatal("a plaintext client was served by a TLS server")
	}
	// A server certificate the client does not trust: refused.
	other := newPKI(t, t.TempDir())
	if _, _, code := s.cli("--tls-ca", other.ca, "--tls-cert", p.clientCert, "--tls-key", p.clientKey, "get", "k"); code == 0 {
		t.Fatal("a client trusting another CA accepted the server")
	}
	s.stop()
}

func TestTLSBadFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	_, err := tryStartServer(t, t.TempDir(), "--engine", "memory", "--tls-cert", garbage, "--tls-key", garbage)
	if err == nil || !strings.Contains(err.Error(), "tls: load certificate") {
		t.Fatalf("server with a garbage certificate: %v", err)
	}
}

// TestObservability checks the gRPC health service, /healthz and /metrics.
func TestObservability(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	s := startServer(t, t.TempDir(), "--engine", "rocksdb", "--metrics-listen", metricsAddr)
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
	// Reflection lists the KV service, so grpcurl and friends work.
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, svc := range rr.GetListServicesResponse().GetService() {
		found = found || svc.GetName() == "flaredb.kv.v1.KV"
	}
	if !found {
		t.Fatalf("reflection does not list flaredb.kv.v1.KV: %v", rr)
	}
	rs.CloseSend()
	if _, _, code := s.cli("put", "m", "v"); code != 0 {
		t.Fatal("put failed")
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + metricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, re := range []string{
		`flaredb_requests_total\{code="OK",method="Stream/Put"\} [1-9]`,
		`flaredb_write_group_size_count [1-9]`,
		`flaredb_engine_call_duration_seconds_count\{op="apply"\} [1-9]`,
		`go_goroutines \d+`,
		`flaredb_engine_store_writes_total [1-9]`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	s.stop()
}

// TestCheckConfigAgreesWithStart: --check-config refuses what the server
// would refuse at start (the engine's own settings, named as configuration
// keys; TLS files that load but do not fit; a port out of range), with the
// configuration exit code, and so does a start; a good configuration
// passes.
func TestCheckConfigAgreesWithStart(t *testing.T) {
	p, other := newPKI(t, t.TempDir()), newPKI(t, t.TempDir())
	data := t.TempDir()
	scratch := t.TempDir()
	notExecutable := filepath.Join(scratch, "plugin.sh")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(scratch, "file")
	if err := os.WriteFile(aFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	engDir := filepath.Join(scratch, "claimed")
	if err := os.MkdirAll(engDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(engDir, ".flaredb-engine"), []byte("badger\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badger := bin("flaredb-badger-plugin")
	cases := []struct {
		name string
		args []string
		want []string // substrings of stderr; none: valid
	}{
		{"good plugin", []string{"--engine", "plugin", "--plugin-path", badger}, nil},
		{"plugin not executable", []string{"--engine", "plugin", "--plugin-path", notExecutable}, []string{"engine.plugin.path", "no execute permission"}},
		{"plugin is a directory", []string{"--engine", "plugin", "--plugin-path", scratch}, []string{"engine.plugin.path", "not a regular file"}},
		{"plugin checksum", []string{"--engine", "plugin", "--plugin-path", badger, "--plugin-sha256", strings.Repeat("0", 64)},
			[]string{"engine.plugin.path", "has SHA-256", "expects " + strings.Repeat("0", 64)}},
		{"data dir is a file", []string{"--engine", "memory", "--data-dir", aFile}, []string{"data_dir " + aFile + " is not a directory"}},
		{"data dir is an engine's", []string{"--engine", "memory", "--data-dir", engDir}, []string{"data_dir", engDir, "engine's own directory"}},
		{"good", []string{"--engine", "rocksdb"}, nil},
		{"rocksdb settings", []string{"--config", writeTOML(t, "[engine]\nname = \"rocksdb\"\n[engine.rocksdb]\ncompression = \"bogus\"\nwrite_buffer_size = 1000\nmax_open_files = 5\n")},
			[]string{`engine.rocksdb.compression "bogus"`, "engine.rocksdb.write_buffer_size 1000 is below 64 KiB", "engine.rocksdb.max_open_files 5"}},
		{"badger settings", []string{"--config", writeTOML(t, "[engine]\nname = \"badger\"\n[engine.badger]\nmemtable_size = 100\n")},
			[]string{"engine.badger.memtable_size 100 is below"}},
		{"key of another certificate", []string{"--engine", "memory", "--tls-cert", p.serverCert, "--tls-key", other.serverKey}, []string{"tls: load certificate", "does not match"}},
		{"client CA without certificates", []string{"--engine", "memory", "--tls-cert", p.serverCert, "--tls-key", p.serverKey, "--tls-client-ca", p.serverKey},
			[]string{"tls: client CA", "no PEM certificates"}},
		{"port out of range", []string{"--engine", "memory", "--listen", "127.0.0.1:99999"}, []string{"port 99999 is out of range"}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			for _, check := range []bool{true, false} {
				args := append([]string{"--data-dir", data, "--metrics-listen", ""}, tc.args...)
				if check {
					args = append(args, "--check-config")
				} else if tc.want == nil {
					continue // a good start is tested elsewhere
				}
				cmd := exec.Command(bin("flaredb-server"), args...)
				cmd.Env = cleanEnv()
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				err := cmd.Run()
				code := cmd.ProcessState.ExitCode()
				if tc.want == nil {
					if err != nil {
						t.Fatalf("check-config=%v: %v\n%s", check, err, stderr.String())
					}
					continue
				}
				if code != 3 {
					t.Errorf("check-config=%v: exit %d, want 3 (configuration)\n%s", check, code, stderr.String())
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr.String(), w) {
						t.Errorf("check-config=%v: stderr lacks %q:\n%s", check, w, stderr.String())
					}
				}
			}
		})
	}
}

// writeTOML writes a configuration file for the test and returns its path.
func writeTOML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "flaredb.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMisspeltEnvironmentWarned: a FLAREDB_ variable that sets nothing
// (a typo) is named in a warning instead of being ignored silently.
func TestMisspeltEnvironmentWarned(t *testing.T) {
	cmd := exec.Command(bin("flaredb-server"), "--data-dir", t.TempDir(), "--engine", "memory", "--check-config")
	cmd.Env = append(cleanEnv(), "FLAREDB_ENGIN=badger")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "FLAREDB_ENGIN is not a setting") {
		t.Fatalf("no warning for FLAREDB_ENGIN:\n%s", stderr.String())
	}
	// A refused configuration names it too: it may be why.
	cmd = exec.Command(bin("flaredb-server"), "--data-dir", t.TempDir(), "--engine", "plugin", "--check-config")
	cmd.Env = append(cleanEnv(), "FLAREDB_PLUGIN_PAHT=/x")
	stderr.Reset()
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "FLAREDB_PLUGIN_PAHT is not a setting") ||
		!strings.Contains(stderr.String(), "engine.plugin.path") {
		t.Fatalf("refused configuration with a misspelt variable: %v\n%s", err, stderr.String())
	}
}
