package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCertifyCommand runs `flaredb conformance` as an engine author would:
// the bbolt example plugin passes and gets a JSON report; a deliberately
// broken plugin (one that forgets writes) fails with a non-zero exit.
func TestCertifyCommand(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.json")
	// The whole suite plus the plugin-only cases: minutes under -race on
	// two cores, so a generous bound (a hang still fails).
	out, errOut, code := runCLITimeout(t, 8*time.Minute, "conformance", "--plugin", bin("flaredb-bbolt-plugin"), "--report", report)
	if code != 0 {
		t.Fatalf("certifying the bbolt example: exit %d\n%s\n%s", code, out, errOut)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	var rep struct {
		Suite    string `json:"suite"`
		Protocol int    `json:"protocol"`
		Plugin   struct {
			SHA256 string `json:"sha256"`
		} `json:"plugin"`
		Engine struct {
			Name string
		} `json:"engine"`
		Cases       []result `json:"cases"`
		PluginCases []result `json:"plugin_cases"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	if rep.Suite == "" || rep.Protocol != 1 || len(rep.Plugin.SHA256) != 64 || rep.Engine.Name != "bbolt" || len(rep.Cases) < 50 {
		t.Fatalf("report lacks fields: %s", b)
	}
	plugin := 0
	for _, c := range append(rep.Cases, rep.PluginCases...) {
		if c.Status == "fail" {
			t.Errorf("case %s failed", c.Name)
		}
	}
	for _, c := range rep.PluginCases {
		if c.Status == "pass" {
			plugin++
		}
	}
	if plugin == 0 {
		t.Fatalf("no plugin-only case passed: %s", b)
	}

	out, errOut, code = runCLITimeout(t, 5*time.Minute, "conformance", "--plugin", bin("forgetful"), "--run", "^(basic|durability)/")
	if code == 0 {
		t.Fatalf("a broken plugin passed certification:\n%s\n%s", out, errOut)
	}
	if !strings.Contains(out+errOut, "fail") {
		t.Fatalf("no failure reported:\n%s\n%s", out, errOut)
	}
}
