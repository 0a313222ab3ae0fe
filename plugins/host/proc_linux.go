//go:build linux

package host

import "syscall"

// setDeathSignal has the kernel SIGKILL the plugin when the host thread
// that started it dies, so a host killed with SIGKILL leaves no plugin
// behind (the plugin would otherwise keep its data directory open).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
