package certify

import (
	"testing"

	"github.com/flaredb/flaredb/conformance"
)

// TestReportOK: a report certifies only when some case passed and none
// failed; one whose every case was skipped certifies nothing.
func TestReportOK(t *testing.T) {
	skipped := conformance.CaseResult{Status: conformance.StatusSkip}
	for _, tc := range []struct {
		name string
		r    Report
		want bool
	}{
		{"all skipped", Report{PluginCases: []conformance.CaseResult{skipped, skipped}, Skipped: 2}, false},
		{"nothing ran", Report{}, false},
		{"one passed, one skipped", Report{PluginCases: []conformance.CaseResult{{Status: conformance.StatusPass}, skipped}, Passed: 1, Skipped: 1}, true},
		{"one failed", Report{PluginCases: []conformance.CaseResult{{Status: conformance.StatusPass}, {Status: conformance.StatusFail}}, Passed: 1, Failed: 1}, false},
	} {
		if got := tc.r.OK(); got != tc.want {
			t.Errorf("%s: OK() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
