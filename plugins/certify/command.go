package certify

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flaredb/flaredb/conformance"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/plugins/host"
)

// ErrFailed is returned by the command when the certification ran and at
// least one case failed, or none passed (the report says which).
var ErrFailed = errors.New("certification failed")

// ErrUsage is wrapped by the command's errors for a wrong command line (a
// missing --plugin, a malformed flag value or checksum, arguments). They
// also have an ExitCode method returning 2, which the flaredb CLI uses as
// the process exit code, as for its own usage errors.
var ErrUsage = errors.New("bad command line")

// usageError is a command-line mistake: it wraps ErrUsage and err.
type usageError struct{ err error }

func (e usageError) Error() string   { return e.err.Error() }
func (e usageError) Unwrap() []error { return []error{ErrUsage, e.err} }

// ExitCode is the process exit code for a usage error.
func (usageError) ExitCode() int { return 2 }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// NewCommand returns the "conformance" command, for mounting in the
// flaredb CLI:
//
//	flaredb conformance --plugin PATH [--arg ARG]... [--env K=V]... [--option K=V]...
//	                    [--sha256 HEX] [--run REGEXP] [--report FILE] [--verbose]
//
// It certifies the plugin binary (see Run), prints a table on standard
// output, writes the JSON report to --report FILE ("-" for standard
// output, instead of the table) and returns an error (wrapping ErrFailed)
// when any case failed or none passed, so the CLI exits non-zero. A
// persistent boolean --json flag of a parent command, when set, prints the
// JSON report on standard output instead of the table.
func NewCommand() *cobra.Command {
	var (
		plugin      string
		args        []string
		env         []string
		options     []string
		sum         string
		run         string
		report      string
		caseTimeout time.Duration
		hangTimeout time.Duration
		startTime   time.Duration
		verbose     bool
	)
	cmd := &cobra.Command{
		Use:   "conformance --plugin PATH",
		Short: "Certify a storage-engine plugin binary with the conformance suite",
		Long: `conformance runs FlareDB's engine conformance suite against a plugin binary,
launched as flaredb-server would launch it, plus the cases only a plugin has:
SIGKILL in the middle of writes (acknowledged writes must survive the restart),
a host speaking another protocol version (refused), stray output on standard
output (kept out of the handshake), a hang at start (killed), and no process or
socket left behind after close.

It prints one line per case and a verdict, writes a JSON report with --report
FILE (or, with --json, prints it instead of the table), and exits non-zero if
any case failed or none passed. Cases skip only for a capability the
engine declares it lacks, or when its declared limits forbid them or leave
nothing to test (the reason is printed).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q (the plugin is given with --plugin; its own arguments with --arg)", args[0])
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if plugin == "" {
				return usagef("--plugin is required")
			}
			if err := checkTimeouts(cmd, caseTimeout, startTime, hangTimeout); err != nil {
				return err
			}
			if g := cmd.Flags().Lookup("json"); g != nil && g.Value.Type() == "bool" && g.Value.String() == "true" {
				if report != "" && report != "-" {
					return usagef("--json prints the report on standard output; it cannot be combined with --report %s", report)
				}
				report = "-"
			}
			cfg := host.Config{Path: plugin, Args: args, Env: env, SHA256: sum, StartTimeout: startTime, Options: map[string]string{}}
			for _, kv := range options {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("--option %q: want KEY=VALUE", kv)
				}
				cfg.Options[k] = v
			}
			opts := Options{CaseTimeout: caseTimeout, HangTimeout: hangTimeout}
			if run != "" {
				re, err := regexp.Compile(run)
				if err != nil {
					return usagef("--run: %v", err)
				}
				opts.Filter = re
			}
			errw := cmd.ErrOrStderr()
			if verbose {
				opts.Logger = slog.New(slog.NewTextHandler(errw, &slog.HandlerOptions{Level: slog.LevelDebug}))
				opts.Progress = func(r conformance.CaseResult) {
					fmt.Fprintf(errw, "%s %s (%v)\n", r.Status, r.Name, r.Duration.Round(time.Millisecond))
				}
			}
			rep, err := Run(cmd.Context(), cfg, opts)
			if errors.Is(err, engine.ErrInvalidArgument) {
				return usageError{err} // a malformed --sha256, --env...
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if report != "-" {
				if err := rep.WriteTable(out); err != nil {
					return err
				}
			}
			if report != "" {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				b = append(b, '\n')
				if report == "-" {
					if _, err := out.Write(b); err != nil {
						return err
					}
				} else if err := os.WriteFile(report, b, 0o644); err != nil {
					return fmt.Errorf("write the JSON report: %w", err)
				}
			}
			if !rep.OK() {
				n := len(rep.Cases) + len(rep.PluginCases)
				if rep.Failed == 0 {
					return fmt.Errorf("%w: no case passed (%d selected, %d skipped)", ErrFailed, n, rep.Skipped)
				}
				return fmt.Errorf("%w: %d of %d cases failed", ErrFailed, rep.Failed, n)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&plugin, "plugin", "", "plugin binary to certify (required)")
	f.StringArrayVar(&args, "arg", nil, "argument passed to the plugin (repeatable)")
	f.StringArrayVar(&env, "env", nil, "KEY=VALUE added to the plugin's environment (repeatable)")
	f.StringArrayVar(&options, "option", nil, "engine option KEY=VALUE passed to the plugin (repeatable)")
	f.StringVar(&sum, "sha256", "", "expected SHA-256 of the binary, in hex (refuse to run it otherwise)")
	f.StringVar(&run, "run", "", "run only the cases whose name matches this regular expression")
	f.StringVar(&report, "report", "", `write the JSON report to this file ("-": standard output, instead of the table)`)
	f.DurationVar(&caseTimeout, "case-timeout", conformance.DefaultCaseTimeout, "time limit of each case")
	f.DurationVar(&hangTimeout, "hang-timeout", DefaultHangTimeout, "start timeout given to the plugin in the hang-at-start case (less than --case-timeout)")
	f.DurationVar(&startTime, "start-timeout", host.DefaultStartTimeout, "how long each launch waits for the plugin's handshake (less than --case-timeout)")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the plugin's logs and each case's result as it ends on standard error")
	return cmd
}

// checkTimeouts refuses a --start-timeout or a --hang-timeout that is not
// shorter than --case-timeout: every launch of a case is bounded by the
// case timeout too, so a longer start timeout would never apply, and a
// case whose launch took all its time could not finish (the hang-at-start
// case would fail with the case's timeout instead of the start timeout it
// checks). Zero means the default, as in Options and host.Config; a
// negative start timeout is left to host.Config.Validate.
func checkTimeouts(cmd *cobra.Command, caseTimeout, startTimeout, hangTimeout time.Duration) error {
	caseNote, startNote := "", ""
	if caseTimeout <= 0 || !cmd.Flags().Changed("case-timeout") {
		caseNote = " (the default)"
	}
	if caseTimeout <= 0 {
		caseTimeout = conformance.DefaultCaseTimeout
	}
	if startTimeout == 0 || !cmd.Flags().Changed("start-timeout") {
		startNote = " (the default)"
	}
	if startTimeout == 0 {
		startTimeout = host.DefaultStartTimeout
	}
	if startTimeout >= caseTimeout {
		return usagef("--start-timeout %v%s must be shorter than --case-timeout %v%s: the case timeout bounds each launch too, and a case cannot finish if launching the plugin takes all its time",
			startTimeout, startNote, caseTimeout, caseNote)
	}
	hangNote := ""
	if hangTimeout <= 0 || !cmd.Flags().Changed("hang-timeout") {
		hangNote = " (the default)"
	}
	if hangTimeout <= 0 {
		hangTimeout = DefaultHangTimeout
	}
	if hangTimeout >= caseTimeout {
		return usagef("--hang-timeout %v%s must be shorter than --case-timeout %v%s: the hang-at-start case waits that long for the plugin to be killed, within its case timeout",
			hangTimeout, hangNote, caseTimeout, caseNote)
	}
	return nil
}
