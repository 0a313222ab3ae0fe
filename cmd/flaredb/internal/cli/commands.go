package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flaredb/flaredb/client"
)

func newGetCommand() *cobra.Command {
	var valueOnly bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read a key's value and version",
		Long: `Read a key's value and version.

Prints the key, value and version; with --value-only, only the value: its
raw bytes with no newline added (or, with --hex/--base64, the encoded value
and a newline). With --json: {"key", "found", "value", "version"}.
Exits with code 4 when the key does not exist.`,
		Example: `  flaredb get user:1
  flaredb get --value-only config > config.bin
  flaredb --hex get 00ff`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := loadGlobals(cmd)
			if err != nil {
				return err
			}
			if valueOnly && g.json {
				return UsageErrorf("--value-only and --json are mutually exclusive")
			}
			key, err := g.enc.key(args[0])
			if err != nil {
				return err
			}
			s, err := open(cmd, g)
			if err != nil {
				return err
			}
			defer s.close()
			v, ver, found, err := s.c.Get(s.ctx, key)
			if err != nil {
				return err
			}
			notFound := &ExitError{Code: ExitNotFound, Err: fmt.Errorf("key not found: %s", g.enc.display(key))}
			switch {
			case g.json:
				o := object{g.enc.bytesField("key", key), {"found", found}}
				if found {
					o = append(o, g.enc.bytesField("value", v), field{"version", ver})
				}
				if err := writeJSON(s.out, o); err != nil {
					return err
				}
				notFound.Quiet = true
			case !found:
			case valueOnly:
				if g.enc == encText {
					_, err = s.out.Write(v)
				} else {
					_, err = fmt.Fprintln(s.out, g.enc.encode(v))
				}
				return err
			default:
				tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "key\t%s\n", g.enc.display(key))
				fmt.Fprintf(tw, "value\t%s\n", g.enc.display(v))
				fmt.Fprintf(tw, "version\t%d\n", ver)
				return tw.Flush()
			}
			if !found {
				return notFound
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&valueOnly, "value-only", false, "print only the value")
	return cmd
}

func newPutCommand() *cobra.Command {
	var valueFile string
	var prev, async bool
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE]",
		Short: "Write a key unconditionally",
		Long: `Write a key unconditionally.

The value is the second argument, or the raw contents of --value-file ('-'
for stdin; file contents are never hex/base64-decoded). An empty value is a
value. Prints the new version; with --prev also the previous value and
version. With --json: {"key", "version"[, "previous_version",
"previous_value"]}.`,
		Example: `  flaredb put user:1 alice
  flaredb put --prev counter 42
  flaredb put blob --value-file ./image.png`,
		Args: usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := loadGlobals(cmd)
			if err != nil {
				return err
			}
			key, err := g.enc.key(args[0])
			if err != nil {
				return err
			}
			var value []byte
			switch {
			case len(args) == 2 && valueFile != "":
				return UsageErrorf("give the value as an argument or with --value-file, not both")
			case len(args) == 2:
				if value, err = g.enc.decode("value", args[1]); err != nil {
					return err
				}
			case valueFile != "":
				if value, err = readInput(cmd, valueFile); err != nil {
					return err
				}
			default:
				return UsageErrorf("missing VALUE (or --value-file)")
			}
			s, err := open(cmd, g)
			if err != nil {
				return err
			}
			defer s.close()
			opts := writeOpts(async)
			if prev {
				opts = append(opts, client.WithPrevious())
			}
			r, err := s.c.Put(s.ctx, key, value, opts...)
			if err != nil {
				return err
			}
			if g.json {
				o := object{g.enc.bytesField("key", key), {"version", r.Version}}
				if prev {
					o = append(o, field{"previous_version", r.PreviousVersion})
					if r.PreviousVersion != 0 {
						o = append(o, g.enc.bytesField("previous_value", r.PreviousValue))
					}
				}
				return writeJSON(s.out, o)
			}
			line := fmt.Sprintf("OK version=%d", r.Version)
			if prev {
				line += " previous: " + describe(g.enc, r.PreviousValue, r.PreviousVersion)
			}
			_, err = fmt.Fprintln(s.out, line)
			return err
		},
	}
	cmd.Flags().StringVar(&valueFile, "value-file", "", "read the value from this file ('-' for stdin)")
	cmd.Flags().BoolVar(&prev, "prev", false, "print the previous value and version")
	cmd.Flags().BoolVar(&async, "async", false, "acknowledge before the write is synced to disk")
	return cmd
}

func newDeleteCommand() *cobra.Command {
	var prev, async bool
	cmd := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete a key",
		Long: `Delete a key. Deleting a key that does not exist succeeds (exit code 0) and
says so. With --json: {"key", "deleted"[, "previous_version",
"previous_value"]}.`,
		Aliases: []string{"del", "rm"},
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := loadGlobals(cmd)
			if err != nil {
				return err
			}
			key, err := g.enc.key(args[0])
			if err != nil {
				return err
			}
			s, err := open(cmd, g)
			if err != nil {
				return err
			}
			defer s.close()
			opts := writeOpts(async)
			if prev {
				opts = append(opts, client.WithPrevious())
			}
			r, err := s.c.Delete(s.ctx, key, opts...)
			if err != nil {
				return err
			}
			if g.json {
				o := object{g.enc.bytesField("key", key), {"deleted", r.Deleted}}
				if prev && r.Deleted {
					o = append(o, field{"previous_version", r.PreviousVersion}, g.enc.bytesField("previous_value", r.PreviousValue))
				}
				return writeJSON(s.out, o)
			}
			line := "deleted"
			if !r.Deleted {
				line = "not found (nothing deleted)"
			} else if prev {
				line += " previous: " + describe(g.enc, r.PreviousValue, r.PreviousVersion)
			}
			_, err = fmt.Fprintln(s.out, line)
			return err
		},
	}
	cmd.Flags().BoolVar(&prev, "prev", false, "print the deleted value and version")
	cmd.Flags().BoolVar(&async, "async", false, "acknowledge before the delete is synced to disk")
	return cmd
}

func newCASCommand() *cobra.Command {
	var (
		ifVersion          uint64
		ifAbsent, ifExists bool
		ifValue            string
		del, async         bool
	)
	cmd := &cobra.Command{
		Use:   "cas KEY [NEWVALUE]",
		Short: "Compare-and-swap: write (or delete) a key if a condition holds",
		Long: `Compare-and-swap: write NEWVALUE to KEY (or delete it, with --delete) only if
exactly one condition holds:

  --if-version N   the key's version is N (0: the key is absent)
  --if-absent      the key does not exist
  --if-exists      the key exists
  --if-value V     the key exists and its value is V

On success prints the new version; when the condition fails, prints the
key's current value and version, writes nothing and exits with code 3.
With --json: {"key", "succeeded", "version", "current_version",
"current_value"} (current_* is the state before the write on success, the
state that failed the condition otherwise).`,
		Example: `  v=$(flaredb get --json counter | jq .version)
  flaredb cas counter 43 --if-version "$v"
  flaredb cas lock me --if-absent
  flaredb cas lock --delete --if-value me`,
		Args: usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := loadGlobals(cmd)
			if err != nil {
				return err
			}
			key, err := g.enc.key(args[0])
			if err != nil {
				return err
			}
			var value []byte
			switch {
			case del && len(args) == 2:
				return UsageErrorf("--delete takes no NEWVALUE")
			case !del && len(args) == 1:
				return UsageErrorf("missing NEWVALUE (or --delete)")
			case !del:
				if value, err = g.enc.decode("value", args[1]); err != nil {
					return err
				}
			}
			var conds []client.Condition
			f := cmd.Flags()
			if f.Changed("if-version") {
				conds = append(conds, client.IfVersion(ifVersion))
			}
			if ifAbsent {
				conds = append(conds, client.IfAbsent())
			}
			if ifExists {
				conds = append(conds, client.IfExists())
			}
			if f.Changed("if-value") {
				v, err := g.enc.decode("--if-value", ifValue)
				if err != nil {
					return err
				}
				conds = append(conds, client.IfValue(v))
			}
			if len(conds) != 1 {
				return UsageErrorf("give exactly one of --if-version, --if-absent, --if-exists, --if-value")
			}
			s, err := open(cmd, g)
			if err != nil {
				return err
			}
			defer s.close()
			var r client.CASResult
			if del {
				r, err = s.c.CompareAndDelete(s.ctx, key, conds[0], writeOpts(async)...)
			} else {
				r, err = s.c.CompareAndSwap(s.ctx, key, conds[0], value, writeOpts(async)...)
			}
			if err != nil {
				return err
			}
			if g.json {
				o := object{
					g.enc.bytesField("key", key),
					{"succeeded", r.Succeeded},
					{"version", r.Version},
					{"current_version", r.CurrentVersion},
				}
				if r.CurrentVersion != 0 {
					o = append(o, g.enc.bytesField("current_value", r.CurrentValue))
				}
				if err := writeJSON(s.out, o); err != nil {
					return err
				}
			} else {
				line := fmt.Sprintf("condition failed (%s): current: %s", conds[0], describe(g.enc, r.CurrentValue, r.CurrentVersion))
				if r.Succeeded {
					line = fmt.Sprintf("OK version=%d", r.Version)
					if del {
						line = "OK deleted"
					}
					line += " previous: " + describe(g.enc, r.CurrentValue, r.CurrentVersion)
				}
				if _, err := fmt.Fprintln(s.out, line); err != nil {
					return err
				}
			}
			if !r.Succeeded {
				return &ExitError{Code: ExitConditionFailed, Err: fmt.Errorf("condition failed"), Quiet: true}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&ifVersion, "if-version", 0, "condition: the key's version is `N` (0: absent)")
	f.BoolVar(&ifAbsent, "if-absent", false, "condition: the key does not exist")
	f.BoolVar(&ifExists, "if-exists", false, "condition: the key exists")
	f.StringVar(&ifValue, "if-value", "", "condition: the key's value is `V`")
	f.BoolVar(&del, "delete", false, "delete the key instead of writing a value")
	f.BoolVar(&async, "async", false, "acknowledge before the write is synced to disk")
	return cmd
}

func newScanCommand() *cobra.Command {
	var (
		limit             int
		reverse, keysOnly bool
		prefix            string
	)
	cmd := &cobra.Command{
		Use:   "scan [START [END]]",
		Short: "List the keys of a range in order",
		Long: `List the entries of [START, END) in key order, from one consistent snapshot.
START empty or omitted means the first key; END omitted means past the last
key. --prefix P scans the keys beginning with P instead.

A server with a scan limit (limits.max_scan_limit) returns at most that many
entries per scan: the listing then goes on with further scans from after the
last key, each from its own snapshot, and a note on stderr says so.

Human output: one line per entry, KEY<TAB>VALUE<TAB>VERSION (KEY<TAB>VERSION
with --keys-only). With --json: one JSON object per line, {"key", "value",
"version"}.`,
		Example: `  flaredb scan
  flaredb scan user: user;
  flaredb scan --prefix user: --limit 10 --reverse`,
		Args: usageArgs(cobra.MaximumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := loadGlobals(cmd)
			if err != nil {
				return err
			}
			if limit < 0 {
				return UsageErrorf("--limit must not be negative")
			}
			var start, end []byte
			if cmd.Flags().Changed("prefix") {
				if len(args) > 0 {
					return UsageErrorf("--prefix and START/END are mutually exclusive")
				}
				if start, err = g.enc.decode("prefix", prefix); err != nil {
					return err
				}
				end = prefixEnd(start)
			} else {
				if len(args) > 0 {
					if start, err = g.enc.decode("start", args[0]); err != nil {
						return err
					}
				}
				if len(args) > 1 {
					if end, err = g.enc.decode("end", args[1]); err != nil {
						return err
					}
					if len(end) > 0 && bytes.Compare(start, end) > 0 {
						return UsageErrorf("START %s is after END %s (the range is [START, END) in both directions; --reverse only lists it backwards)",
							g.enc.display(start), g.enc.display(end))
					}
				}
			}
			s, err := open(cmd, g)
			if err != nil {
				return err
			}
			defer s.close()
			w := newLineWriter(s.out)
			// A server with a scan limit (limits.max_scan_limit) cuts a
			// scan short: then the scan goes on from after the last key,
			// as a new scan (a new snapshot), until the range or --limit
			// is exhausted, and says so on stderr.
			var (
				total, pages int
				maxScan      uint64 // the server's scan limit, once asked
				asked        bool
			)
			for {
				n := 0
				var last []byte
				opts := client.ScanOptions{Reverse: reverse, KeysOnly: keysOnly}
				if limit > 0 {
					opts.Limit = limit - total
				}
				for kv, err := range s.c.Scan(s.ctx, start, end, opts) {
					if err != nil {
						w.flush()
						return err
					}
					n++
					last = kv.Key
					switch {
					case g.json:
						o := object{g.enc.bytesField("key", kv.Key)}
						if !keysOnly {
							o = append(o, g.enc.bytesField("value", kv.Value))
						}
						o = append(o, field{"version", kv.Version})
						if err := writeJSON(w, o); err != nil {
							return err
						}
					case keysOnly:
						fmt.Fprintf(w, "%s\t%d\n", g.enc.display(kv.Key), kv.Version)
					default:
						fmt.Fprintf(w, "%s\t%s\t%d\n", g.enc.display(kv.Key), g.enc.display(kv.Value), kv.Version)
					}
					if w.err != nil {
						return w.err
					}
				}
				total += n
				if n > 0 {
					pages++ // scans that returned entries
				}
				if n == 0 || (limit > 0 && total >= limit) {
					break
				}
				if !asked {
					st, err := s.c.Status(s.ctx)
					if err != nil && !errors.Is(err, client.ErrUnsupported) {
						w.flush()
						return fmt.Errorf("scan: reading the server's scan limit: %w", err)
					}
					maxScan, asked = st.Limits.MaxScanLimit, true
				}
				if maxScan == 0 || uint64(n) < maxScan {
					break // the range ended before the server's limit
				}
				if reverse {
					end = last
				} else {
					start = append(last, 0)
				}
			}
			if err := w.flush(); err != nil {
				return err
			}
			if pages > 1 {
				fmt.Fprintf(cmd.ErrOrStderr(), "flaredb: the server returns at most %d entries per scan (limits.max_scan_limit): "+
					"read in %d scans, each from its own snapshot\n", maxScan, pages)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&limit, "limit", 0, "at most `N` entries (0: no limit)")
	f.BoolVar(&reverse, "reverse", false, "scan from the end of the range backwards")
	f.BoolVar(&keysOnly, "keys-only", false, "omit values")
	f.StringVar(&prefix, "prefix", "", "scan the keys beginning with `P`")
	return cmd
}

// prefixEnd returns the first key after every key beginning with p, or nil
// when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func newStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Describe the server, its engine and its limits",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := loadGlobals(cmd)
			if err != nil {
				return err
			}
			s, err := open(cmd, g)
			if err != nil {
				return err
			}
			defer s.close()
			st, err := s.c.Status(s.ctx)
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(s.out, object{
					{"address", g.addr},
					{"server_version", st.ServerVersion},
					{"engine", st.Engine},
					{"engine_version", st.EngineVersion},
					{"engine_mode", st.EngineMode},
					{"engine_protocol", st.EngineProtocol},
					{"sync_default", st.SyncDefault},
					{"last_version", st.LastVersion},
					{"uptime_seconds", int64(st.Uptime / time.Second)},
					{"limits", object{
						{"max_key_size", st.Limits.MaxKeySize},
						{"max_value_size", st.Limits.MaxValueSize},
						{"max_batch_ops", st.Limits.MaxBatchOps},
						{"max_message_size", st.Limits.MaxMessageSize},
						{"max_scan_limit", st.Limits.MaxScanLimit},
					}},
				})
			}
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "address\t%s\n", g.addr)
			fmt.Fprintf(tw, "server version\t%s\n", st.ServerVersion)
			fmt.Fprintf(tw, "engine\t%s %s (%s, protocol %d)\n", st.Engine, st.EngineVersion, st.EngineMode, st.EngineProtocol)
			fmt.Fprintf(tw, "sync by default\t%v\n", st.SyncDefault)
			if st.LastVersion == 0 {
				fmt.Fprintf(tw, "last version\tnone issued since the server started\n")
			} else {
				fmt.Fprintf(tw, "last version\t%d\n", st.LastVersion)
			}
			fmt.Fprintf(tw, "uptime\t%s\n", st.Uptime)
			fmt.Fprintf(tw, "max key size\t%s\n", fmtLimit(st.Limits.MaxKeySize))
			fmt.Fprintf(tw, "max value size\t%s\n", fmtLimit(st.Limits.MaxValueSize))
			fmt.Fprintf(tw, "max batch ops\t%s\n", fmtLimit(st.Limits.MaxBatchOps))
			fmt.Fprintf(tw, "max message size\t%s\n", fmtLimit(st.Limits.MaxMessageSize))
			fmt.Fprintf(tw, "max scan limit\t%s\n", fmtLimit(st.Limits.MaxScanLimit))
			return tw.Flush()
		},
	}
}

func fmtLimit(n uint64) string {
	if n == 0 {
		return "none"
	}
	return strconv.FormatUint(n, 10)
}

// describe renders a key's state for human output.
func describe(enc encoding, value []byte, version uint64) string {
	if version == 0 {
		return "absent"
	}
	return fmt.Sprintf("version=%d value=%s", version, enc.display(value))
}

func writeOpts(async bool) []client.WriteOption {
	if async {
		return []client.WriteOption{client.WithAsync()}
	}
	return nil
}

// readInput reads a whole file, or stdin for "-".
func readInput(cmd *cobra.Command, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(name)
}

// lineWriter buffers output and remembers the first write error.
type lineWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func newLineWriter(w io.Writer) *lineWriter { return &lineWriter{w: w} }

// Write buffers p, flushing when the buffer is large.
func (l *lineWriter) Write(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	l.buf = append(l.buf, p...)
	if len(l.buf) >= 64<<10 {
		l.flush()
	}
	return len(p), l.err
}

func (l *lineWriter) flush() error {
	if l.err == nil && len(l.buf) > 0 {
		_, l.err = l.w.Write(l.buf)
		l.buf = l.buf[:0]
	}
	return l.err
}
