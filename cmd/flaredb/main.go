// Command flaredb is the command-line client of FlareDB: get, put, delete,
// compare-and-swap, atomic batches, scans, server status and a load
// generator, and "flaredb conformance" to certify an engine plugin. Run
// "flaredb --help" for usage and exit codes; the logic lives in package cli
// and package certify.
package main

import (
	"os"

	"github.com/flaredb/flaredb/cmd/flaredb/internal/cli"
	"github.com/flaredb/flaredb/plugins/certify"
)

func main() {
	os.Exit(cli.Main(certify.NewCommand()))
}
