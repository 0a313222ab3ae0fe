//go:build !unix

package sdk

import "os"

// guardStdout does nothing on systems without dup2: stray output to
// standard output can break the handshake there.
func guardStdout() (*os.File, error) { return nil, nil }
