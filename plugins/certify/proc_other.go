//go:build !unix

package certify

import (
	"errors"
	"os"
)

// alive cannot tell on this system; it says no.
func alive(int) bool { return false }

// groupAlive cannot tell on this system; it says no.
func groupAlive(int) bool { return false }

// sigkill kills process pid.
func sigkill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Kill(); err != nil {
		return errors.Join(errors.New("kill"), err)
	}
	return nil
}
