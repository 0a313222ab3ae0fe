//go:build unix && !linux

package host

import "syscall"

// setDeathSignal does nothing here: only Linux has a parent-death signal.
// The SDK's plugins also exit when their parent process is gone.
func setDeathSignal(*syscall.SysProcAttr) {}
