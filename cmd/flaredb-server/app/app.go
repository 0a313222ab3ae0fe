// Package app is the flaredb-server command: flags, configuration, the
// stock engines wired in by name, signals and graceful shutdown. The main
// package only calls Main. Being a command, it may import any FlareDB
// package; no package imports it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/flaredb/flaredb/core/config"
	"github.com/flaredb/flaredb/core/engine"
	"github.com/flaredb/flaredb/core/server"
	"github.com/flaredb/flaredb/engines/badgerengine"
	"github.com/flaredb/flaredb/engines/memengine"
	"github.com/flaredb/flaredb/engines/rocksdbengine"
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitUsage  = 2
	exitConfig = 3
)

// Openers returns the engines this binary can open, by name.
func Openers() server.Openers {
	return server.Openers{
		"rocksdb": {
			Mode: "in-process",
			Open: func(_ context.Context, c config.Config, dir string, _ *slog.Logger) (engine.Engine, error) {
				return rocksdbengine.Open(dir, rocksdbOptions(c))
			},
			Check: func(c config.Config) error {
				return configKeys(rocksdbOptions(c).Validate(), "rocksdbengine", "engine.rocksdb", map[string]string{
					"BlockCacheSize": "block_cache_size", "WriteBufferSize": "write_buffer_size",
					"MaxOpenFiles": "max_open_files", "Compression": "compression",
				})
			},
		},
		"badger": {
			Mode: "in-process",
			Open: func(_ context.Context, c config.Config, dir string, log *slog.Logger) (engine.Engine, error) {
				o := badgerOptions(c)
				o.Logger = log.With("component", "badger")
				return badgerengine.Open(dir, o)
			},
			Check: func(c config.Config) error {
				return configKeys(badgerOptions(c).Validate(), "badgerengine", "engine.badger", map[string]string{
					"BlockCacheSize": "block_cache_size", "MemTableSize": "memtable_size",
				})
			},
		},
		"memory": {Mode: "in-process", Open: func(context.Context, config.Config, string, *slog.Logger) (engine.Engine, error) {
			return memengine.New(), nil
		}},
		"plugin": pluginOpener(),
	}
}

func rocksdbOptions(c config.Config) *rocksdbengine.Options {
	r := c.Engine.RocksDB
	return &rocksdbengine.Options{
		BlockCacheSize:  int64(r.BlockCacheSize),
		WriteBufferSize: int64(r.WriteBufferSize),
		MaxOpenFiles:    r.MaxOpenFiles,
		Compression:     r.Compression,
	}
}

func badgerOptions(c config.Config) *badgerengine.Options {
	b := c.Engine.Badger
	return &badgerengine.Options{
		BlockCacheSize: int64(b.BlockCacheSize),
		MemTableSize:   int64(b.MemTableSize),
	}
}

// configKeys rewrites an engine's option errors (one per line, such as
// "engine: invalid argument: rocksdbengine: WriteBufferSize 1000 is below
// 64 KiB") in the configuration's terms ("engine.rocksdb.write_buffer_size
// 1000 is below 64 KiB"): fields maps the engine's option names to the
// keys of section.
func configKeys(err error, pkg, section string, fields map[string]string) error {
	if err == nil {
		return nil
	}
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		l = strings.TrimPrefix(l, engine.ErrInvalidArgument.Error()+": ")
		l = strings.TrimPrefix(l, pkg+": ")
		for field, key := range fields {
			if rest, ok := strings.CutPrefix(l, field+" "); ok {
				l = section + "." + key + " " + rest
			} else {
				l = strings.ReplaceAll(l, " "+field+" ", " "+section+"."+key+" ")
			}
		}
		if !strings.HasPrefix(l, section+".") {
			l = section + ": " + l
		}
		lines[i] = l
	}
	return errors.New(strings.Join(lines, "\n"))
}

const usage = `flaredb-server: the FlareDB key-value server.

Usage:
  flaredb-server [--config FILE] [flags]

Settings come from built-in defaults, then the TOML file given with
--config (or FLAREDB_CONFIG), then FLAREDB_* environment variables, then
flags. --print-config prints the effective configuration and exits.

Flags:
`

// Main runs the server until SIGINT or SIGTERM and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("flaredb-server", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "TOML configuration file (env FLAREDB_CONFIG)")
	printCfg := fs.Bool("print-config", false, "print the effective configuration and exit")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	recoverTSO := fs.Bool("recover-tso", false, "rebuild a lost timestamp-oracle file (DATA_DIR/tso) from the newest version the engine stores, then serve")
	startEmpty := fs.Bool("start-empty-engine", false, "start the configured engine on its empty directory although another engine's data is in the data directory (that data is not served; the consent is recorded, so later starts need no flag)")
	flags := config.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "flaredb-server: %v (see --help)\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "flaredb-server: unexpected arguments %q (see --help)\n", fs.Args())
		return exitUsage
	}
	path := *cfgPath
	if path == "" {
		path = os.Getenv("FLAREDB_CONFIG")
	}
	// Variables that set nothing (typos, most likely) are named: in the
	// log when serving, else on stderr, where a refused configuration may
	// be explained by them.
	unknownEnv := config.UnknownEnv(os.Environ())
	const envWarning = "is not a setting and is ignored (misspelt? the variables are listed in --help)"
	warnEnv := func() {
		for _, name := range unknownEnv {
			fmt.Fprintf(stderr, "flaredb-server: warning: %s %s\n", name, envWarning)
		}
	}
	cfg, err := flags.Resolve(path, os.LookupEnv)
	if err != nil {
		warnEnv()
		fmt.Fprintf(stderr, "flaredb-server: %v\n", err)
		return exitConfig
	}
	openers := Openers()
	var compiled []string
	for _, n := range openers.Names() {
		if n != "plugin" {
			compiled = append(compiled, n)
		}
	}
	if err := cfg.Validate(compiled); err != nil {
		warnEnv()
		fmt.Fprintf(stderr, "flaredb-server: invalid configuration:\n%v\n", err)
		return exitConfig
	}
	if *printCfg {
		fmt.Fprint(stdout, cfg.TOML())
		return exitOK
	}
	if err := server.CheckConfig(cfg, openers); err != nil {
		warnEnv()
		fmt.Fprintf(stderr, "flaredb-server: invalid configuration:\n%v\n", err)
		return exitConfig
	}
	cfg.RecoverTSO = *recoverTSO
	cfg.StartEmptyEngine = *startEmpty
	if *check {
		warnEnv()
		fmt.Fprintln(stdout, "configuration is valid")
		return exitOK
	}

	log := newLogger(cfg.Log, stderr)
	for _, name := range unknownEnv {
		log.Warn("environment variable "+envWarning, "variable", name)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP (a closed terminal, a log rotation's kill -HUP) would kill the
	// server at once, cutting the calls in flight: it is ignored, and says
	// so. The configuration is read only at start.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Warn("SIGHUP ignored: the configuration is read only at start; stop the server with SIGTERM or SIGINT")
		}
	}()
	srv, err := server.Start(ctx, cfg, openers, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		fmt.Fprintf(stderr, "flaredb-server: %v\n", err)
		return exitError
	}
	code := exitOK
	select {
	case <-ctx.Done():
		log.Info("signal received")
	case err := <-srv.Err():
		log.Error("server failed", "err", err)
		code = exitError
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		code = exitError
	}
	return code
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
