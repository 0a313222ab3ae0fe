//go:build !unix

package main

import "time"

// freeze never returns: the call hangs (the process cannot be stopped
// here).
func freeze() { time.Sleep(time.Hour) }
