// Package config is the server's configuration: the TOML file format, its
// defaults, the flags and environment variables that override it, and
// validation that reports every problem at once.
//
// Precedence, lowest first: built-in defaults, the TOML file, environment
// variables (FLAREDB_*), command-line flags. The package imports nothing of
// FlareDB's; the set of engine names it accepts is given by the caller.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole server configuration. The zero value is not valid;
// start from Default().
type Config struct {
	// Listen is the gRPC address (default 127.0.0.1:7070).
	Listen string `toml:"listen"`
	// MetricsListen is the HTTP address of /metrics and /healthz (default
	// 127.0.0.1:7071; empty disables it).
	MetricsListen string `toml:"metrics_listen"`
	// DataDir holds the engine's files, the lock and the timestamp
	// oracle's mark (default ./flaredb-data).
	DataDir string `toml:"data_dir"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM/SIGINT
	// (default 30s); calls still running then are cancelled.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`

	Engine Engine `toml:"engine"`
	Limits Limits `toml:"limits"`
	TLS    TLS    `toml:"tls"`
	Log    Log    `toml:"log"`

	// RecoverTSO rebuilds a lost timestamp-oracle file at start from the
	// newest version the engine stores (a full scan). It is a one-time
	// action, set by flaredb-server --recover-tso, never in a file.
	RecoverTSO bool `toml:"-"`
	// StartEmptyEngine lets the configured engine selection start on its
	// empty directory although another engine directory in the data
	// directory holds data, which it does not serve. It is a one-time
	// action, set by flaredb-server --start-empty-engine, never in a file:
	// the server records the consent (DATA_DIR/engine-NAME.consent) before
	// the engine opens, so later starts, including one after a start that
	// failed once the check had passed, need no flag; the file is removed
	// once the engine's identity is recorded.
	StartEmptyEngine bool `toml:"-"`
}

// Engine chooses and tunes the storage engine.
type Engine struct {
	// Name is a compiled-in engine ("rocksdb", the default, "badger",
	// "memory") or "plugin" for an engine served by a plugin binary.
	Name string `toml:"name"`
	// Sync makes every acknowledged write durable across a machine crash
	// (default true). Clients may still ask for async writes per request.
	Sync bool `toml:"sync"`
	// CallTimeout bounds one engine call the server makes for many clients
	// at once — a merged read, a group of writes (default 30s). A call
	// that takes longer fails its callers with UNAVAILABLE (for writes:
	// outcome unknown) instead of holding them, and the server's
	// shutdown, while an engine (typically a plugin) is stuck.
	CallTimeout Duration      `toml:"call_timeout"`
	RocksDB     RocksDBEngine `toml:"rocksdb"`
	Badger      BadgerEngine  `toml:"badger"`
	Plugin      PluginEngine  `toml:"plugin"`
}

// RocksDBEngine tunes the rocksdb engine. Zero means the engine's default.
type RocksDBEngine struct {
	BlockCacheSize  Size   `toml:"block_cache_size"`  // default 64MiB
	WriteBufferSize Size   `toml:"write_buffer_size"` // default 64MiB
	MaxOpenFiles    int    `toml:"max_open_files"`    // default 1000, -1 unlimited
	Compression     string `toml:"compression"`       // none, snappy, lz4 (default), zstd, zlib
}

// BadgerEngine tunes the badger engine. Zero means the engine's default.
type BadgerEngine struct {
	BlockCacheSize Size `toml:"block_cache_size"` // default 64MiB
	MemTableSize   Size `toml:"memtable_size"`    // default 64MiB
}

// PluginEngine runs an engine from a plugin binary.
type PluginEngine struct {
	// Path is the plugin binary.
	Path string `toml:"path"`
	// Args are passed to the binary.
	Args []string `toml:"args"`
	// SHA256 is the expected hex checksum of the binary; empty skips the
	// check.
	SHA256 string `toml:"sha256"`
	// Env holds extra KEY=VALUE environment variables for the plugin.
	Env []string `toml:"env"`
	// Options are engine options passed to the plugin, as strings; each
	// plugin documents its own (the stock ones: block_cache_size =
	// "268435456", compression = "zstd", ...). Unknown options are a
	// startup error.
	Options map[string]string `toml:"options"`
	// StartTimeout bounds the plugin's start and handshake (default 30s).
	StartTimeout Duration `toml:"start_timeout"`
	// StopTimeout bounds the wait for calls in progress at shutdown, and
	// then the plugin's clean stop (engine close, exit after SIGTERM)
	// before its process group is killed (default 10s each).
	StopTimeout Duration `toml:"stop_timeout"`
	// RestartMaxBackoff caps the back-off between restarts of a plugin that
	// died (default 30s).
	RestartMaxBackoff Duration `toml:"restart_max_backoff"`
	// MaxRestarts gives up after that many restarts in a row without a
	// stable run (default 0: never give up); the server then reports the
	// failure and flaredb-server exits with status 1, for its supervisor
	// to restart it.
	MaxRestarts int `toml:"max_restarts"`
}

// Limits bound requests. Each has a documented default; the engine's own
// limits, when smaller, apply too.
type Limits struct {
	MaxKeySize     Size `toml:"max_key_size"`     // default 4 KiB
	MaxValueSize   Size `toml:"max_value_size"`   // default 16 MiB
	MaxBatchOps    int  `toml:"max_batch_ops"`    // ops in one atomic batch or BatchGet, default 1024
	MaxMessageSize Size `toml:"max_message_size"` // gRPC message, default 64 MiB
	MaxScanLimit   int  `toml:"max_scan_limit"`   // entries per scan when unlimited/requested more, default 0 (none)
}

// TLS configures transport security for the gRPC listener.
type TLS struct {
	// CertFile and KeyFile enable TLS when both are set.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ClientCAFile, when set, requires and verifies client certificates
	// (mutual TLS).
	ClientCAFile string `toml:"client_ca_file"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Log configures the structured log.
type Log struct {
	Level  string `toml:"level"`  // debug, info (default), warn, error
	Format string `toml:"format"` // text (default) or json
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:7070",
		MetricsListen:   "127.0.0.1:7071",
		DataDir:         "./flaredb-data",
		ShutdownTimeout: Duration(30 * time.Second),
		Engine: Engine{
			Name:        "rocksdb",
			Sync:        true,
			CallTimeout: Duration(30 * time.Second),
			Plugin:      PluginEngine{StartTimeout: Duration(30 * time.Second), StopTimeout: Duration(10 * time.Second), RestartMaxBackoff: Duration(30 * time.Second)},
		},
		Limits: Limits{
			MaxKeySize:     4 << 10,
			MaxValueSize:   16 << 20,
			MaxBatchOps:    1024,
			MaxMessageSize: 64 << 20,
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// Parse decodes TOML over c, rejecting keys it does not know (a misspelt
// option is an error, not a silent default). name is used in messages.
func (c *Config) Parse(name string, data []byte) error {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		return fmt.Errorf("config %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("config %s: unknown keys: %s", name, strings.Join(keys, ", "))
	}
	return nil
}

// Load reads the TOML file at path over c.
func (c *Config) Load(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return c.Parse(path, data)
}

// Validate checks c and returns every problem found, joined (nil if
// none). engines lists the compiled-in engine names; "plugin" is always
// accepted.
func (c *Config) Validate(engines []string) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Listen == "" {
		bad("listen: must not be empty")
	} else if err := checkAddr(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.MetricsListen != "" {
		if err := checkAddr(c.MetricsListen); err != nil {
			bad("metrics_listen %q: %v", c.MetricsListen, err)
		} else if c.MetricsListen == c.Listen && !anyPort(c.Listen) {
			bad("metrics_listen and listen are both %q", c.Listen)
		}
	}
	if c.DataDir == "" {
		// Even for the memory engine: the lock and the timestamp oracle
		// live there.
		bad("data_dir: must not be empty (it holds the server's lock and timestamp oracle, whatever the engine)")
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout: must not be negative")
	}
	names := append(slices.Clone(engines), "plugin")
	switch {
	case c.Engine.Name == "":
		bad("engine.name: must not be empty (available: %s)", strings.Join(names, ", "))
	case !slices.Contains(names, c.Engine.Name):
		bad("engine.name %q: unknown engine (available: %s)", c.Engine.Name, strings.Join(names, ", "))
	}
	if c.Engine.Name == "plugin" {
		if c.Engine.Plugin.Path == "" {
			bad("engine.plugin.path: required when engine.name is \"plugin\"")
		}
		if s := c.Engine.Plugin.SHA256; s != "" && !isHex(s, 64) {
			bad("engine.plugin.sha256: want 64 hex digits, got %q", s)
		}
		if c.Engine.Plugin.StartTimeout <= 0 {
			bad("engine.plugin.start_timeout: must be positive")
		}
		if c.Engine.Plugin.StopTimeout <= 0 {
			bad("engine.plugin.stop_timeout: must be positive")
		}
		if c.Engine.Plugin.RestartMaxBackoff <= 0 {
			bad("engine.plugin.restart_max_backoff: must be positive")
		}
		if c.Engine.Plugin.MaxRestarts < 0 {
			bad("engine.plugin.max_restarts: must not be negative")
		}
		for i, kv := range c.Engine.Plugin.Env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				bad("engine.plugin.env[%d] %q: want KEY=VALUE", i, kv)
			}
		}
	}
	if c.Engine.CallTimeout <= 0 {
		bad("engine.call_timeout: must be positive")
	}
	// Settings of an engine that is not the selected one would be ignored:
	// say so rather than run without them.
	if set := c.Engine.unselectedSettings(); len(set) > 0 {
		bad("%s set but engine.name is %q: they would be ignored (remove them; a plugin takes its engine's settings in [engine.plugin.options])",
			strings.Join(set, ", "), c.Engine.Name)
	}
	for _, s := range []struct {
		name string
		v    Size
	}{
		{"engine.rocksdb.block_cache_size", c.Engine.RocksDB.BlockCacheSize},
		{"engine.rocksdb.write_buffer_size", c.Engine.RocksDB.WriteBufferSize},
		{"engine.badger.block_cache_size", c.Engine.Badger.BlockCacheSize},
		{"engine.badger.memtable_size", c.Engine.Badger.MemTableSize},
	} {
		if s.v < 0 {
			bad("%s: must not be negative", s.name)
		}
	}
	if c.Engine.RocksDB.MaxOpenFiles < -1 {
		bad("engine.rocksdb.max_open_files: must be -1 (unlimited) or more")
	}
	l := c.Limits
	if l.MaxKeySize <= 0 {
		bad("limits.max_key_size: must be positive")
	}
	if l.MaxValueSize < 0 {
		bad("limits.max_value_size: must not be negative")
	}
	if l.MaxBatchOps <= 0 {
		bad("limits.max_batch_ops: must be positive")
	}
	if l.MaxMessageSize <= 0 {
		bad("limits.max_message_size: must be positive")
	} else if !fitsMessage(l) {
		bad("limits.max_message_size (%s) is too small for one key and value at their limits (%s + %s)",
			l.MaxMessageSize, l.MaxKeySize, l.MaxValueSize)
	}
	if l.MaxScanLimit < 0 {
		bad("limits.max_scan_limit: must not be negative")
	}
	t := c.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls: cert_file and key_file must be set together")
	}
	if t.ClientCAFile != "" && !t.Enabled() {
		bad("tls.client_ca_file needs tls.cert_file and tls.key_file")
	}
	for _, f := range []struct{ name, path string }{
		{"tls.cert_file", t.CertFile}, {"tls.key_file", t.KeyFile}, {"tls.client_ca_file", t.ClientCAFile},
		{"engine.plugin.path", c.Engine.Plugin.Path},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad("%s: %v", f.name, err)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format %q: want text or json", c.Log.Format)
	}
	return errors.Join(errs...)
}

// unselectedSettings names the settings of engine sections other than the
// selected engine's that differ from their defaults.
func (e Engine) unselectedSettings() []string {
	d := Default().Engine
	var set []string
	add := func(section string, differs bool, key string) {
		if differs && e.Name != section {
			set = append(set, "engine."+section+"."+key)
		}
	}
	r, b, p := e.RocksDB, e.Badger, e.Plugin
	add("rocksdb", r.BlockCacheSize != d.RocksDB.BlockCacheSize, "block_cache_size")
	add("rocksdb", r.WriteBufferSize != d.RocksDB.WriteBufferSize, "write_buffer_size")
	add("rocksdb", r.MaxOpenFiles != d.RocksDB.MaxOpenFiles, "max_open_files")
	add("rocksdb", r.Compression != d.RocksDB.Compression, "compression")
	add("badger", b.BlockCacheSize != d.Badger.BlockCacheSize, "block_cache_size")
	add("badger", b.MemTableSize != d.Badger.MemTableSize, "memtable_size")
	add("plugin", p.Path != d.Plugin.Path, "path")
	add("plugin", len(p.Args) > 0, "args")
	add("plugin", p.SHA256 != d.Plugin.SHA256, "sha256")
	add("plugin", len(p.Env) > 0, "env")
	add("plugin", len(p.Options) > 0, "options")
	add("plugin", p.StartTimeout != d.Plugin.StartTimeout, "start_timeout")
	add("plugin", p.StopTimeout != d.Plugin.StopTimeout, "stop_timeout")
	add("plugin", p.RestartMaxBackoff != d.Plugin.RestartMaxBackoff, "restart_max_backoff")
	add("plugin", p.MaxRestarts != d.Plugin.MaxRestarts, "max_restarts")
	return set
}

// anyPort reports whether address a asks for any free port (port 0), so
// that two listeners on it do not collide.
func anyPort(a string) bool {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n == 0
}

func checkAddr(a string) error {
	i := strings.LastIndex(a, ":")
	if i < 0 {
		return errors.New("want host:port")
	}
	port := a[i+1:]
	if port == "" {
		return errors.New("missing port")
	}
	for _, r := range port {
		if r < '0' || r > '9' {
			return fmt.Errorf("port %q is not a number", port)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n > 65535 {
		return fmt.Errorf("port %s is out of range (0 to 65535; 0 picks a free one)", port)
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range strings.ToLower(s) {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// TOML renders c as a TOML document (the effective configuration).
func (c Config) TOML() string {
	var b bytes.Buffer
	b.WriteString("# An engine setting at 0 or \"\" takes the engine's default.\n")
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(c); err != nil {
		return "# cannot render configuration: " + err.Error() + "\n"
	}
	return b.String()
}

// AbsDataDir returns DataDir made absolute.
func (c Config) AbsDataDir() (string, error) {
	return filepath.Abs(c.DataDir)
}

// fitsMessage reports whether one key and one value at their limits fit in
// a message of l.MaxMessageSize with 1 KiB to spare. It subtracts rather
// than adds: the sum of two huge sizes would overflow. Negative sizes are
// reported elsewhere.
func fitsMessage(l Limits) bool {
	if l.MaxKeySize < 0 || l.MaxValueSize < 0 {
		return true
	}
	room := l.MaxMessageSize - 1024
	return l.MaxKeySize <= room && l.MaxValueSize <= room-l.MaxKeySize
}
