package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

var stock = []string{"badger", "memory", "rocksdb"}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(stock); err != nil {
		t.Fatal(err)
	}
	if !c.Engine.Sync || c.Engine.Name != "rocksdb" || !strings.HasPrefix(c.Listen, "127.0.0.1:") {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestSampleConfigs(t *testing.T) {
	files, err := filepath.Glob("../../examples/config/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no sample configs: %v", err)
	}
	for _, f := range files {
		c := Default()
		if err := c.Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if c.TLS.Enabled() {
			continue // names certificate files that exist only on the operator's machine
		}
		if err := c.Validate(stock); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	c := Default()
	toml := `
listen = "nowhere"
metrics_listen = "127.0.0.1:99999"
data_dir = ""
[engine]
name = "leveldb"
[limits]
max_key_size = 0
max_batch_ops = -1
max_message_size = "1KiB"
[tls]
key_file = "k.pem"
[log]
level = "loud"
format = "xml"
`
	if err := c.Parse("test", []byte(toml)); err != nil {
		t.Fatal(err)
	}
	err := c.Validate(stock)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{
		`listen "nowhere"`, "port 99999 is out of range", "data_dir", `unknown engine (available: badger, memory, rocksdb, plugin)`,
		"limits.max_key_size", "limits.max_batch_ops", "limits.max_message_size",
		"cert_file and key_file must be set together", `log.level "loud"`, `log.format "xml"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, toml, want string }{
		{"syntax", "listen = [", "config test"},
		{"unknown key", "lisen = \"x\"", "unknown keys: lisen"},
		{"unknown nested key", "[engine]\nnmae = \"x\"", "unknown keys: engine.nmae"},
		{"bad size", "[limits]\nmax_value_size = \"lots\"", "bad size"},
		{"bad duration", "shutdown_timeout = \"soon\"", "bad duration"},
		{"wrong type", "[limits]\nmax_batch_ops = \"many\"", "max_batch_ops"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := c.Parse("test", []byte(tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSizes(t *testing.T) {
	cases := []struct {
		in   string
		want Size
		ok   bool
	}{
		{"4096", 4096, true}, {"4KiB", 4096, true}, {"16MiB", 16 << 20, true}, {"1GiB", 1 << 30, true},
		{"2MB", 2_000_000, true}, {"1k", 1024, true}, {" 8 KiB ", 8192, true},
		{"", 0, false}, {"-1", 0, false}, {"1.5MiB", 0, false}, {"MiB", 0, false}, {"99999999999TiB", 0, false},
	}
	for _, tc := range cases {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.toml")
	c := Default()
	c.Listen = "127.0.0.1:1000"
	c.DataDir = "/from/file"
	c.Engine.Name = "badger"
	c.ShutdownTimeout = Duration(5 * time.Second)
	if err := writeFile(path, c.TOML()); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f := RegisterFlags(fs)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:3000"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLAREDB_LISTEN": "127.0.0.1:2000", "FLAREDB_DATA_DIR": "/from/env"}
	got, err := f.Resolve(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if got.Listen != "127.0.0.1:3000" || got.DataDir != "/from/env" || got.Engine.Name != "badger" || got.ShutdownTimeout.D() != 5*time.Second {
		t.Fatalf("precedence: %+v", got)
	}
	env["FLAREDB_SYNC"] = "maybe"
	if _, err := f.Resolve(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil || !strings.Contains(err.Error(), "FLAREDB_SYNC") {
		t.Fatalf("bad env value: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(Default().TOML()))
	f.Add([]byte("[limits]\nmax_value_size = \"1GiB\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Default()
		if err := c.Parse("fuzz", b); err != nil {
			return
		}
		_ = c.Validate(stock) // must not panic
		// What parses must render and parse back to the same configuration.
		c2 := Default()
		if err := c2.Parse("round trip", []byte(c.TOML())); err != nil {
			t.Fatalf("rendered config does not parse: %v\n%s", err, c.TOML())
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "4KiB", "16MiB", "1GB", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		back, err := ParseSize(n.String())
		if err != nil || back != n {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, n, n.String(), back, err)
		}
	})
}

// TestUnselectedEngineSettings: settings of an engine other than the
// selected one are refused (they would be ignored), naming each key; the
// selected engine's own settings are accepted.
func TestUnselectedEngineSettings(t *testing.T) {
	cases := []struct {
		name, toml string
		want       []string // substrings of the error; none: valid
	}{
		{"rocksdb tuned, rocksdb chosen", "[engine]\nname = \"rocksdb\"\n[engine.rocksdb]\nblock_cache_size = \"1GiB\"\n", nil},
		{"badger tuned, badger chosen", "[engine]\nname = \"badger\"\n[engine.badger]\nmemtable_size = \"8MiB\"\n", nil},
		{"rocksdb tuned, badger chosen", "[engine]\nname = \"badger\"\n[engine.rocksdb]\nblock_cache_size = \"1GiB\"\ncompression = \"zstd\"\n",
			[]string{"engine.rocksdb.block_cache_size, engine.rocksdb.compression set but engine.name is \"badger\""}},
		{"badger tuned, plugin chosen", "[engine]\nname = \"plugin\"\n[engine.plugin]\npath = \"/bin/sh\"\n[engine.badger]\nmemtable_size = \"8MiB\"\n",
			[]string{"engine.badger.memtable_size set", "[engine.plugin.options]"}},
		{"plugin settings, rocksdb chosen", "[engine.plugin]\nargs = [\"-v\"]\nstop_timeout = \"1s\"\n[engine.plugin.options]\nx = \"1\"\n",
			[]string{"engine.plugin.args, engine.plugin.options, engine.plugin.stop_timeout set but engine.name is \"rocksdb\""}},
		{"call timeout zero", "[engine]\ncall_timeout = \"0s\"\n", []string{"engine.call_timeout: must be positive"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if err := c.Parse("test", []byte(tc.toml)); err != nil {
				t.Fatal(err)
			}
			err := c.Validate(stock)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestEmptyEnvOverrides: a variable that is set but empty overrides like an
// empty flag (it disables the metrics listener); an unset one does not.
func TestEmptyEnvOverrides(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unset", map[string]string{}, Default().MetricsListen},
		{"empty", map[string]string{"FLAREDB_METRICS_LISTEN": ""}, ""},
		{"set", map[string]string{"FLAREDB_METRICS_LISTEN": "127.0.0.1:9"}, "127.0.0.1:9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := RegisterFlags(pflag.NewFlagSet("t", pflag.ContinueOnError))
			c, err := f.Resolve("", func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if err != nil {
				t.Fatal(err)
			}
			if c.MetricsListen != tc.want {
				t.Fatalf("metrics_listen = %q, want %q", c.MetricsListen, tc.want)
			}
		})
	}
}

// TestListenersMayShareAnyPort: listen and metrics_listen may both ask for
// any free port; the same fixed address twice is refused.
func TestListenersMayShareAnyPort(t *testing.T) {
	for _, tc := range []struct {
		listen, metrics string
		ok              bool
	}{
		{"127.0.0.1:0", "127.0.0.1:0", true},
		{"127.0.0.1:7070", "127.0.0.1:7070", false},
		{"127.0.0.1:7070", "127.0.0.1:7071", true},
	} {
		c := Default()
		c.Listen, c.MetricsListen = tc.listen, tc.metrics
		err := c.Validate(stock)
		if (err == nil) != tc.ok {
			t.Errorf("listen %s, metrics_listen %s: %v", tc.listen, tc.metrics, err)
		}
	}
}

// TestLimitsDoNotOverflow: sizes whose sum overflows int64 do not slip past
// the check that one key and value fit in a message.
func TestLimitsDoNotOverflow(t *testing.T) {
	for _, toml := range []string{
		"[limits]\nmax_value_size = 9223372036854775807",
		"[limits]\nmax_key_size = \"4194304TiB\"\nmax_value_size = \"4194304TiB\"",
	} {
		c := Default()
		if err := c.Parse("test", []byte(toml)); err != nil {
			t.Fatalf("%q: %v", toml, err)
		}
		if err := c.Validate(stock); err == nil || !strings.Contains(err.Error(), "limits.max_message_size") {
			t.Errorf("%q: %v, want limits.max_message_size too small", toml, err)
		}
	}
}

// TestMemoryNeedsDataDir: the memory engine keeps nothing on disk, but the
// server keeps its lock and timestamp oracle in data_dir (an empty one was
// the current directory).
func TestMemoryNeedsDataDir(t *testing.T) {
	c := Default()
	c.Engine.Name = "memory"
	c.DataDir = ""
	if err := c.Validate(stock); err == nil || !strings.Contains(err.Error(), "data_dir: must not be empty") {
		t.Fatalf("memory engine without data_dir: %v", err)
	}
}

// TestUnknownEnv: FLAREDB_ variables that set nothing are reported; the
// settings' own, the config file's and the CLI's address are not, nor is
// anything without the prefix.
func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{
		"FLAREDB_ENGIN=badger", "FLAREDB_ENGINE=badger", "FLAREDB_CONFIG=/etc/f.toml", "FLAREDB_ADDR=x:1",
		"FLAREDB_MAX_SCAN_LIMIT=3", "HOME=/root", "FLAREDB_METRICS_LISTEN=", "PATH=/bin",
	})
	if want := []string{"FLAREDB_ENGIN", "FLAREDB_MAX_SCAN_LIMIT"}; !slices.Equal(got, want) {
		t.Fatalf("UnknownEnv = %q, want %q", got, want)
	}
}
