// Package cli implements the flaredb command-line tool: a cobra command tree
// over the Go client (package client). The main package only calls Main;
// NewRootCommand lets other binaries mount extra subcommands. It talks to
// servers only through package client and the public API: it must not
// import the server, the core service or any engine.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flaredb/flaredb/client"
)

// Exit codes of the flaredb command.
const (
	// ExitOK: the command succeeded.
	ExitOK = 0
	// ExitFailure: the command failed (connection, server error, unreadable
	// input file...).
	ExitFailure = 1
	// ExitUsage: the command line is wrong (unknown command or flag, wrong
	// number of arguments, conflicting flags, malformed key or value).
	ExitUsage = 2
	// ExitConditionFailed: a cas or batch condition did not hold; nothing
	// was written.
	ExitConditionFailed = 3
	// ExitNotFound: get found no such key.
	ExitNotFound = 4
)

// DefaultAddr is the server address used when neither --addr nor
// FLAREDB_ADDR is set.
const DefaultAddr = "127.0.0.1:7070"

// EnvAddr is the environment variable giving the default server address.
const EnvAddr = "FLAREDB_ADDR"

// ExitError is an error carrying the process exit code it should produce.
// Quiet errors have already been reported (for instance a failed condition
// printed as a result) and print nothing more.
type ExitError struct {
	Code  int
	Err   error
	Quiet bool
}

// Error returns the underlying error's message.
func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *ExitError) Unwrap() error { return e.Err }

// UsageErrorf returns an error making the command exit with ExitUsage.
// Subcommands mounted through NewRootCommand use it for bad arguments.
func UsageErrorf(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

func usageError(err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return &ExitError{Code: ExitUsage, Err: err}
}

// usageArgs wraps a cobra argument validator so its errors are usage
// errors.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		return usageError(v(cmd, args))
	}
}

// ExitCode maps an error returned by a command to the process exit code:
// nil is ExitOK, an *ExitError gives its Code, as does an error with an
// ExitCode() int method (so that mounted commands from other packages, such
// as certify's, can give theirs), a key not found gives ExitNotFound,
// anything else ExitFailure.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if errors.Is(err, client.ErrNotFound) {
		return ExitNotFound
	}
	return ExitFailure
}

const rootLong = `flaredb is the command-line client of FlareDB, a distributed key-value store
with compare-and-swap.

Keys and values are given as text. For binary data use --hex or --base64: then
every key and value on the command line, in batch files and in the output is
hex or base64 (standard alphabet, padding optional). In human output, text that
is not printable is shown quoted with Go escapes; with --json, text that is not
valid UTF-8 is emitted base64-encoded in a field suffixed "_base64" (for
example "value_base64" instead of "value").

The server address comes from --addr, else $FLAREDB_ADDR, else 127.0.0.1:7070
(an empty --addr or FLAREDB_ADDR is a usage error).
TLS is used when --tls or any --tls-* flag is given.

Exit codes:
  0  success
  1  error (connection, server, input files)
  2  usage error (bad command line, malformed key or value)
  3  a cas or batch condition failed (nothing was written)
  4  key not found (get)`

// NewRootCommand returns the flaredb command tree with the global flags and
// the standard subcommands (get, put, delete, cas, batch, scan, status,
// bench), plus extra, mounted as further subcommands. Extra commands see the
// global flags and may use Dial to get a client; they should return errors
// made with UsageErrorf for usage mistakes and *ExitError for other exit
// codes, or, from packages that cannot import this one, errors with an
// ExitCode() int method.
func NewRootCommand(extra ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:           "flaredb",
		Short:         "Command-line client for FlareDB",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          usageArgs(noArgsUnknownCommand),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	pf := root.PersistentFlags()
	pf.String("addr", DefaultAddr, "server address host:port (env "+EnvAddr+")")
	pf.Duration("timeout", 10*time.Second, "deadline for the whole command (bench: for connecting and loading)")
	pf.Bool("json", false, "print results as JSON (scan: one JSON object per line)")
	pf.Bool("hex", false, "keys and values (input and output) are hex")
	pf.Bool("base64", false, "keys and values (input and output) are base64")
	pf.Bool("unary", false, "use one unary RPC per request instead of the multiplexed stream")
	pf.Bool("tls", false, "use TLS (system roots unless --tls-ca)")
	pf.String("tls-ca", "", "PEM file of CA certificates to verify the server (implies --tls)")
	pf.String("tls-cert", "", "PEM client certificate for mutual TLS (implies --tls, needs --tls-key)")
	pf.String("tls-key", "", "PEM client private key (implies --tls, needs --tls-cert)")
	pf.String("tls-server-name", "", "server name to verify in the server's certificate (implies --tls)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })

	root.AddCommand(
		newGetCommand(),
		newPutCommand(),
		newDeleteCommand(),
		newCASCommand(),
		newBatchCommand(),
		newScanCommand(),
		newStatusCommand(),
		newBenchCommand(),
	)
	root.AddCommand(extra...)
	return root
}

func noArgsUnknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

// Execute runs root with args and the given standard streams, prints any
// error on stderr and returns the exit code. The command's context is ctx
// (Main passes one canceled on interrupt).
func Execute(ctx context.Context, root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitCode(err)
	var ee *ExitError
	if !errors.As(err, &ee) || !ee.Quiet {
		msg := err.Error()
		if !strings.HasPrefix(msg, "flaredb: ") {
			msg = "flaredb: " + msg
		}
		// Say which deadline ran out: --timeout bounds every command.
		if f := root.PersistentFlags().Lookup("timeout"); f != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			msg += fmt.Sprintf(" (--timeout %s ran out)", f.Value)
		}
		fmt.Fprintln(stderr, msg)
		if code == ExitUsage && cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return code
}

// Main runs the flaredb command with the process's arguments and streams
// and returns the exit code; an interrupt (Ctrl-C) cancels the running
// command.
func Main(extra ...*cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return Execute(ctx, NewRootCommand(extra...), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// globals are the global flags of one invocation.
type globals struct {
	addr    string
	timeout time.Duration
	json    bool
	enc     encoding
	unary   bool

	tls                                   bool
	tlsCA, tlsCert, tlsKey, tlsServerName string
}

func loadGlobals(cmd *cobra.Command) (*globals, error) {
	f := cmd.Flags()
	g := &globals{}
	g.addr, _ = f.GetString("addr")
	if f.Changed("addr") {
		if strings.TrimSpace(g.addr) == "" {
			return nil, UsageErrorf("--addr is empty: give host:port")
		}
	} else if env, ok := os.LookupEnv(EnvAddr); ok {
		// Set but empty is a mistake (a variable meant to be filled in),
		// not a request for the default.
		if strings.TrimSpace(env) == "" {
			return nil, UsageErrorf("%s is set but empty: unset it or give host:port", EnvAddr)
		}
		g.addr = env
	}
	g.timeout, _ = f.GetDuration("timeout")
	g.json, _ = f.GetBool("json")
	g.unary, _ = f.GetBool("unary")
	hex, _ := f.GetBool("hex")
	b64, _ := f.GetBool("base64")
	switch {
	case hex && b64:
		return nil, UsageErrorf("--hex and --base64 are mutually exclusive")
	case hex:
		g.enc = encHex
	case b64:
		g.enc = encBase64
	}
	g.tls, _ = f.GetBool("tls")
	g.tlsCA, _ = f.GetString("tls-ca")
	g.tlsCert, _ = f.GetString("tls-cert")
	g.tlsKey, _ = f.GetString("tls-key")
	g.tlsServerName, _ = f.GetString("tls-server-name")
	if g.tlsCA != "" || g.tlsCert != "" || g.tlsKey != "" || g.tlsServerName != "" {
		g.tls = true
	}
	if (g.tlsCert == "") != (g.tlsKey == "") {
		return nil, UsageErrorf("--tls-cert and --tls-key go together")
	}
	if g.timeout <= 0 {
		return nil, UsageErrorf("--timeout must be positive")
	}
	return g, nil
}

// tlsConfig builds the TLS configuration from the --tls-* flags.
func (g *globals) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: g.tlsServerName, MinVersion: tls.VersionTLS12}
	if g.tlsCA != "" {
		pem, err := os.ReadFile(g.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: no PEM certificates in %s", g.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if g.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(g.tlsCert, g.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (g *globals) clientOptions() ([]client.Option, error) {
	var opts []client.Option
	if g.tls {
		cfg, err := g.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	if g.unary {
		opts = append(opts, client.WithUnary())
	}
	return opts, nil
}

// Dial connects to the server named by cmd's global flags (--addr, TLS,
// --unary), within ctx. The caller closes the client.
func Dial(ctx context.Context, cmd *cobra.Command) (*client.Client, error) {
	g, err := loadGlobals(cmd)
	if err != nil {
		return nil, err
	}
	return g.dial(ctx)
}

func (g *globals) dial(ctx context.Context, extra ...client.Option) (*client.Client, error) {
	opts, err := g.clientOptions()
	if err != nil {
		return nil, err
	}
	c, err := client.New(ctx, g.addr, append(opts, extra...)...)
	if err != nil {
		return nil, g.tlsMismatch(err)
	}
	return c, nil
}

// hintError is err with a hint appended to its message, in parentheses.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *hintError) Unwrap() error { return e.err }

// Hints for a connection failure that suggests that the client and the
// server disagree about TLS.
const (
	hintServerTLS = "is the server using TLS? pass --tls-ca FILE with its CA certificate, or --tls to verify it " +
		"against the system roots; add --tls-cert and --tls-key if it asks for a client certificate"
	hintServerPlaintext = "is the server using plaintext? leave out --tls and the --tls-* flags"
	hintHTTP            = "an HTTP/1 server answered: is this the FlareDB gRPC address (listen), not metrics_listen or another service?"
)

// tlsMismatch adds a hint to a connection failure that looks like a
// plaintext client talking to a TLS server (the server closes the
// connection without an HTTP/2 preface: gRPC reports "error reading server
// preface" or "connection closed before server preface received") or a
// TLS client talking to a plaintext server ("first record does not look
// like a TLS handshake"); a failure that shows an HTTP/1 server answered
// (the metrics port, say) gets a hint of its own.
func (g *globals) tlsMismatch(err error) error {
	if !errors.Is(err, client.ErrUnavailable) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "looked like an HTTP/1.1 header") || strings.Contains(msg, "server replied with HTTP"):
		return &hintError{err, hintHTTP}
	case !g.tls && strings.Contains(msg, "server preface"):
		return &hintError{err, hintServerTLS}
	case g.tls && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return &hintError{err, hintServerPlaintext}
	}
	return err
}

// session is what most commands need: the globals, a context bounded by
// --timeout and a connected client.
type session struct {
	*globals
	ctx    context.Context
	cancel context.CancelFunc
	c      *client.Client
	out    io.Writer
}

func (s *session) close() {
	if s.c != nil {
		_ = s.c.Close()
	}
	s.cancel()
}

// open loads the globals and connects. Input parsing that can fail with a
// usage error should happen before, via loadGlobals, so a bad command line
// never waits for a connection.
func open(cmd *cobra.Command, g *globals) (*session, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
	c, err := g.dial(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &session{globals: g, ctx: ctx, cancel: cancel, c: c, out: cmd.OutOrStdout()}, nil
}
