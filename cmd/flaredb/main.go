// Command flaredb is the command-line client of FlareDB: get, put, delete,
// compare-and-swap, atomic batches, scans, server status and a load
// generator. Run "flaredb --help" for usage and exit codes; the logic lives
// in package cli.
package main

import (
	"os"

	"github.com/flaredb/flaredb/cmd/flaredb/internal/cli"
)

func main() {
	os.Exit(cli.Main())
}
