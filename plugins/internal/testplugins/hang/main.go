// Command hang starts like a plugin but never completes the handshake. It
// first starts a child process (itself, with the argument "child"), which
// stays in its process group: the host must kill both.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		time.Sleep(24 * time.Hour)
		return
	}
	cmd := exec.Command(os.Args[0], "child")
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "hang: cannot start child: %v\n", err)
	} else {
		fmt.Fprintf(os.Stderr, "hang: child pid %d\n", cmd.Process.Pid)
	}
	time.Sleep(24 * time.Hour)
}
