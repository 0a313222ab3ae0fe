package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/flaredb/flaredb/client"
)

const batchLong = `Apply several conditional operations atomically: if every condition holds,
every put and delete applies (all with one new version); otherwise nothing is
written and the command exits with code 3. Prints, per operation, whether its
condition held and the key's state before the batch.

Operations are given as arguments, or as JSON with --file (or --file - for
stdin), not both.

Argument form:  OP[@COND]:KEY[=VALUE]
  OP     put (needs =VALUE), delete, check (writes nothing; only its
         condition counts)
  COND   N         the key's version is N (0: absent)
         absent    the key does not exist
         exists    the key exists
         value=V   the key's value is V (V must not contain ':')
         omitted: no condition
  KEY    ends at the first '=' for put (use --hex, --base64 or the JSON form
         for keys containing '='); the rest is the VALUE, which may contain
         anything.

JSON form: an array of operations, or {"ops": [...]}; each operation is an
object with
  "op"           "put", "delete" or "check"
  "key"          the key (hex/base64 with --hex/--base64), or "key_base64"
  "value"        for put: the value, or "value_base64"
  "if_version"   N, or "if_absent": true, or "if_exists": true, or
  "if_value"     V (or "if_value_base64"); at most one condition (false
                 and null are refused: leave the member out for none)

With --json the result is {"succeeded", "version", "results": [{"op",
"key", "condition", "condition_held", "version", "value"}]}, where version
and value are the key's state before the batch.`

const batchExample = `  flaredb batch 'check@42:config' 'put:user:1=alice' 'delete@exists:tmp'
  flaredb batch 'put@absent:lock=me' 'put@7:counter=8'
  echo '[{"op":"put","key":"a","value":"1","if_absent":true}]' | flaredb batch -f -`

func newBatchCommand() *cobra.Command {
	var file string
	var async bool
	cmd := &cobra.Command{
		Use:     "batch OP...",
		Short:   "Apply conditional operations atomically",
		Long:    batchLong,
		Example: batchExample,
		Args:    usageArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := loadGlobals(cmd)
			if err != nil {
				return err
			}
			var ops []client.Op
			switch {
			case file != "" && len(args) > 0:
				return UsageErrorf("give operations as arguments or with --file, not both")
			case file != "":
				data, err := readInput(cmd, file)
				if err != nil {
					return err
				}
				if ops, err = parseBatchJSON(g.enc, data); err != nil {
					return &ExitError{Code: ExitUsage, Err: fmt.Errorf("batch file %s: %w", file, err)}
				}
			case len(args) > 0:
				for i, a := range args {
					op, err := parseBatchArg(g.enc, a)
					if err != nil {
						return UsageErrorf("operation %d (%q): %v", i+1, a, err)
					}
					ops = append(ops, op)
				}
			default:
				return UsageErrorf("no operations")
			}
			if len(ops) == 0 {
				return UsageErrorf("no operations")
			}
			s, err := open(cmd, g)
			if err != nil {
				return err
			}
			defer s.close()
			r, err := s.c.Batch(s.ctx, ops, writeOpts(async)...)
			if err != nil {
				return err
			}
			if err := printBatch(s.out, g, ops, r); err != nil {
				return err
			}
			if !r.Succeeded {
				return &ExitError{Code: ExitConditionFailed, Err: errors.New("condition failed"), Quiet: true}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "read the operations as JSON from `FILE` ('-' for stdin)")
	cmd.Flags().BoolVar(&async, "async", false, "acknowledge before the batch is synced to disk")
	return cmd
}

// parseBatchArg parses OP[@COND]:KEY[=VALUE].
func parseBatchArg(enc encoding, arg string) (client.Op, error) {
	head, rest, ok := strings.Cut(arg, ":")
	if !ok {
		return client.Op{}, errors.New("want OP[@COND]:KEY[=VALUE]")
	}
	name, condStr, hasCond := strings.Cut(head, "@")
	kind, err := opKind(name)
	if err != nil {
		return client.Op{}, err
	}
	op := client.Op{Kind: kind}
	if hasCond {
		if op.Cond, err = parseCond(enc, condStr); err != nil {
			return client.Op{}, err
		}
	}
	keyStr := rest
	if kind == client.OpPut {
		var valStr string
		keyStr, valStr, ok = strings.Cut(rest, "=")
		if !ok {
			return client.Op{}, errors.New("put needs KEY=VALUE")
		}
		if op.Value, err = enc.decode("value", valStr); err != nil {
			return client.Op{}, err
		}
	}
	if op.Key, err = enc.key(keyStr); err != nil {
		return client.Op{}, err
	}
	return op, nil
}

func opKind(name string) (client.OpKind, error) {
	switch name {
	case "put":
		return client.OpPut, nil
	case "delete", "del":
		return client.OpDelete, nil
	case "check":
		return client.OpCheck, nil
	}
	return 0, fmt.Errorf("unknown operation %q (want put, delete or check)", name)
}

func parseCond(enc encoding, s string) (client.Condition, error) {
	switch {
	case s == "absent":
		return client.IfAbsent(), nil
	case s == "exists":
		return client.IfExists(), nil
	case strings.HasPrefix(s, "value="):
		v, err := enc.decode("condition value", strings.TrimPrefix(s, "value="))
		if err != nil {
			return client.Condition{}, err
		}
		return client.IfValue(v), nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return client.Condition{}, fmt.Errorf("unknown condition %q (want a version, absent, exists or value=V)", s)
	}
	return client.IfVersion(n), nil
}

// parseBatchJSON parses the JSON form.
func parseBatchJSON(enc encoding, data []byte) ([]client.Op, error) {
	data = bytes.TrimSpace(data)
	var raws []json.RawMessage
	if len(data) > 0 && data[0] == '{' {
		var doc map[string]json.RawMessage
		if err := strictUnmarshal(data, &doc); err != nil {
			return nil, err
		}
		for k := range doc {
			if k != "ops" {
				return nil, fmt.Errorf("unknown member %q (want \"ops\")", k)
			}
		}
		if err := strictUnmarshal(doc["ops"], &raws); err != nil {
			return nil, fmt.Errorf("ops: %w", err)
		}
	} else if err := strictUnmarshal(data, &raws); err != nil {
		return nil, err
	}
	ops := make([]client.Op, 0, len(raws))
	for i, raw := range raws {
		op, err := parseJSONOp(enc, raw)
		if err != nil {
			return nil, fmt.Errorf("op %d: %w", i+1, err)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func strictUnmarshal(data []byte, v any) error {
	if len(data) == 0 {
		return errors.New("empty input")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

var jsonOpMembers = map[string]bool{
	"op": true, "key": true, "key_base64": true, "value": true, "value_base64": true,
	"if_version": true, "if_absent": true, "if_exists": true, "if_value": true, "if_value_base64": true,
}

func parseJSONOp(enc encoding, raw json.RawMessage) (client.Op, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return client.Op{}, err
	}
	for k, v := range m {
		if !jsonOpMembers[k] {
			return client.Op{}, fmt.Errorf("unknown member %q", k)
		}
		// null would read as a zero (version 0: absent; an empty value):
		// a meaning the writer may not have intended.
		if string(bytes.TrimSpace(v)) == "null" {
			return client.Op{}, fmt.Errorf("%q is null: leave it out, or give it a value", k)
		}
	}
	var name string
	if err := json.Unmarshal(m["op"], &name); err != nil {
		return client.Op{}, fmt.Errorf(`"op": want "put", "delete" or "check"`)
	}
	kind, err := opKind(name)
	if err != nil {
		return client.Op{}, err
	}
	op := client.Op{Kind: kind}
	key, ok, err := enc.jsonBytes(m, "key")
	if err != nil {
		return client.Op{}, err
	}
	if !ok || len(key) == 0 {
		return client.Op{}, errors.New(`missing or empty "key"`)
	}
	op.Key = key
	value, hasValue, err := enc.jsonBytes(m, "value")
	if err != nil {
		return client.Op{}, err
	}
	switch {
	case kind == client.OpPut && !hasValue:
		return client.Op{}, errors.New(`put needs "value"`)
	case kind != client.OpPut && hasValue:
		return client.Op{}, fmt.Errorf(`%s takes no "value"`, name)
	}
	op.Value = value
	nconds := 0
	if raw, ok := m["if_version"]; ok {
		var v uint64
		if err := json.Unmarshal(raw, &v); err != nil {
			return client.Op{}, fmt.Errorf("if_version: %w", err)
		}
		op.Cond = client.IfVersion(v)
		nconds++
	}
	for _, flag := range []string{"if_absent", "if_exists"} {
		raw, ok := m[flag]
		if !ok {
			continue
		}
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return client.Op{}, fmt.Errorf("%s: %w", flag, err)
		}
		if !b {
			// false would read as no condition: an unconditional write
			// the writer may not have intended.
			return client.Op{}, fmt.Errorf("%q: false is not a condition: leave it out for no condition", flag)
		}
		if flag == "if_absent" {
			op.Cond = client.IfAbsent()
		} else {
			op.Cond = client.IfExists()
		}
		nconds++
	}
	if v, ok, err := enc.jsonBytes(m, "if_value"); err != nil {
		return client.Op{}, err
	} else if ok {
		op.Cond = client.IfValue(v)
		nconds++
	}
	if nconds > 1 {
		return client.Op{}, errors.New("more than one condition")
	}
	return op, nil
}

func printBatch(w io.Writer, g *globals, ops []client.Op, r client.BatchResult) error {
	if g.json {
		results := make([]object, len(ops))
		for i, op := range ops {
			o := object{
				{"op", op.Kind.String()},
				g.enc.bytesField("key", op.Key),
				{"condition", op.Cond.String()},
				{"condition_held", r.Results[i].ConditionHeld},
				{"version", r.Results[i].Version},
			}
			if r.Results[i].Version != 0 {
				o = append(o, g.enc.bytesField("value", r.Results[i].Value))
			}
			results[i] = o
		}
		return writeJSON(w, object{{"succeeded", r.Succeeded}, {"version", r.Version}, {"results", results}})
	}
	if r.Succeeded {
		fmt.Fprintf(w, "OK: applied at version %d\n", r.Version)
	} else {
		fmt.Fprintln(w, "condition failed: nothing written")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tOP\tKEY\tCONDITION\tHELD\tBEFORE")
	for i, op := range ops {
		held := "yes"
		if !r.Results[i].ConditionHeld {
			held = "NO"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, op.Kind, g.enc.display(op.Key), condDisplay(g.enc, op.Cond), held,
			describe(g.enc, r.Results[i].Value, r.Results[i].Version))
	}
	return tw.Flush()
}

// condDisplay shows a condition in the argument syntax.
func condDisplay(enc encoding, c client.Condition) string {
	s := c.String()
	if v, ok := strings.CutPrefix(s, "value="); ok {
		// Condition.String quotes the value; show it in the user's encoding.
		if uq, err := strconv.Unquote(v); err == nil {
			return "value=" + enc.display([]byte(uq))
		}
	}
	if s == "always" {
		return "-"
	}
	return s
}
