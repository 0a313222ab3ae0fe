package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// override is one setting that a flag and an environment variable can set.
type override struct {
	flag  string
	usage string
	set   func(c *Config, v string) error
}

func str(f func(c *Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *f(c) = v; return nil }
}

func size(f func(c *Config) *Size) func(*Config, string) error {
	return func(c *Config, v string) error { return f(c).Set(v) }
}

func integer(f func(c *Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("bad integer %q", v)
		}
		*f(c) = n
		return nil
	}
}

var overrides = []override{
	{"listen", "gRPC listen address", str(func(c *Config) *string { return &c.Listen })},
	{"metrics-listen", "HTTP address for /metrics and /healthz (empty disables)", str(func(c *Config) *string { return &c.MetricsListen })},
	{"data-dir", "data directory", str(func(c *Config) *string { return &c.DataDir })},
	{"shutdown-timeout", "graceful shutdown bound", func(c *Config, v string) error { return c.ShutdownTimeout.Set(v) }},
	{"engine", "storage engine: rocksdb, badger, memory or plugin", str(func(c *Config) *string { return &c.Engine.Name })},
	{"sync", "sync writes to stable storage before acknowledging (true/false)", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("bad boolean %q", v)
		}
		c.Engine.Sync = b
		return nil
	}},
	{"call-timeout", "bound on one engine call made for many clients", func(c *Config, v string) error { return c.Engine.CallTimeout.Set(v) }},
	{"plugin-path", "plugin binary (with --engine plugin)", str(func(c *Config) *string { return &c.Engine.Plugin.Path })},
	{"plugin-sha256", "expected SHA-256 of the plugin binary", str(func(c *Config) *string { return &c.Engine.Plugin.SHA256 })},
	{"max-key-size", "largest key", size(func(c *Config) *Size { return &c.Limits.MaxKeySize })},
	{"max-value-size", "largest value", size(func(c *Config) *Size { return &c.Limits.MaxValueSize })},
	{"max-batch-ops", "most operations in one batch", integer(func(c *Config) *int { return &c.Limits.MaxBatchOps })},
	{"max-message-size", "largest gRPC message", size(func(c *Config) *Size { return &c.Limits.MaxMessageSize })},
	{"tls-cert", "TLS certificate file", str(func(c *Config) *string { return &c.TLS.CertFile })},
	{"tls-key", "TLS key file", str(func(c *Config) *string { return &c.TLS.KeyFile })},
	{"tls-client-ca", "CA file for client certificates (mutual TLS)", str(func(c *Config) *string { return &c.TLS.ClientCAFile })},
	{"log-level", "debug, info, warn or error", str(func(c *Config) *string { return &c.Log.Level })},
	{"log-format", "text or json", str(func(c *Config) *string { return &c.Log.Format })},
}

// EnvName returns the environment variable that overrides a flag's setting:
// FLAREDB_ followed by the flag name in upper case with - as _.
func EnvName(flag string) string {
	return "FLAREDB_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// otherEnv are FLAREDB_ variables that are not settings but are in use:
// the server's configuration file and the CLI's server address.
var otherEnv = map[string]bool{"FLAREDB_CONFIG": true, "FLAREDB_ADDR": true}

// UnknownEnv returns the names of the variables in environ (KEY=VALUE
// entries, as os.Environ gives) that begin with FLAREDB_ but set nothing:
// most likely misspelt settings, which would otherwise be ignored
// silently.
func UnknownEnv(environ []string) []string {
	known := make(map[string]bool, len(overrides))
	for _, o := range overrides {
		known[EnvName(o.flag)] = true
	}
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "FLAREDB_") && !known[name] && !otherEnv[name] {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

// Flags holds the override flags registered on a flag set.
type Flags struct {
	fs     *pflag.FlagSet
	values map[string]*string
}

// RegisterFlags adds one string flag per overridable setting to fs.
func RegisterFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{fs: fs, values: make(map[string]*string)}
	for _, o := range overrides {
		f.values[o.flag] = fs.String(o.flag, "", fmt.Sprintf("%s (env %s)", o.usage, EnvName(o.flag)))
	}
	return f
}

// Resolve builds the effective configuration: defaults, then the TOML file
// at path (if path is not empty), then environment variables from
// lookupEnv (os.LookupEnv when nil), then the flags that were set. A
// variable that is set but empty counts, as an empty flag does:
// FLAREDB_METRICS_LISTEN= disables the metrics listener. Every override
// problem is reported, joined with the file's, before validation (which the
// caller runs).
func (f *Flags) Resolve(path string, lookupEnv func(string) (string, bool)) (Config, error) {
	c := Default()
	if path != "" {
		if err := c.Load(path); err != nil {
			return c, err
		}
	}
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	var errs []string
	for _, o := range overrides {
		if v, ok := lookupEnv(EnvName(o.flag)); ok {
			if err := o.set(&c, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", EnvName(o.flag), err))
			}
		}
	}
	for _, o := range overrides {
		if f.fs.Changed(o.flag) {
			if err := o.set(&c, *f.values[o.flag]); err != nil {
				errs = append(errs, fmt.Sprintf("--%s: %v", o.flag, err))
			}
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return c, nil
}
