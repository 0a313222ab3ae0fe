// Command testhost launches a plugin with package host, prints the plugin's
// process id on standard output, and waits to be killed. Tests SIGKILL it to
// check that a plugin does not outlive its host.
//
//	testhost PLUGIN DATADIR SOCKETDIR
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/flaredb/flaredb/plugins/host"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: testhost PLUGIN DATADIR SOCKETDIR")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := host.Launch(ctx, host.Config{Path: os.Args[1], DataDir: os.Args[2], SocketDir: os.Args[3]}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(p.PID())
	time.Sleep(time.Hour)
	_ = p.Close()
}
