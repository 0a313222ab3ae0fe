// Command flaredb-server is the stock FlareDB server: RocksDB by default, on
// a local data directory, listening on 127.0.0.1. See `flaredb-server
// --help` and the README.
package main

import (
	"os"

	"github.com/flaredb/flaredb/cmd/flaredb-server/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
