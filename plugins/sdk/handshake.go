package sdk

import (
	"bufio"
	"io"
	"os"
	"strings"
	"sync/atomic"
)

// filterState tells whether the handshake line went through.
type filterState struct{ sent atomic.Bool }

func (f *filterState) handshakeSent() bool { return f.sent.Load() }

// handshakeFilter returns the write end of a pipe whose reader passes the
// first line that looks like go-plugin's handshake to realOut (then closes
// it), and copies every other byte to other. The reader runs until the
// write end is closed (in practice, for the life of the process).
func handshakeFilter(realOut *os.File, other io.Writer) (*os.File, *filterState, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	state := &filterState{}
	go func() {
		defer r.Close()
		br := bufio.NewReaderSize(r, 64<<10)
		sent := false
		partial := false // the previous read ended inside a long line
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				if !sent && !partial && isHandshake(string(line)) {
					_, _ = realOut.Write(line)
					// Record it before closing: whoever sees the close may
					// ask at once whether the handshake went out.
					sent = true
					state.sent.Store(true)
					_ = realOut.Close()
				} else {
					_, _ = other.Write(line)
				}
			}
			partial = err == bufio.ErrBufferFull
			if err != nil && err != bufio.ErrBufferFull {
				if !sent {
					_ = realOut.Close()
				}
				return
			}
		}
	}()
	return w, state, nil
}

// isHandshake reports whether line looks like go-plugin's handshake: core
// protocol 1, then at least five more '|'-separated fields, ending in a
// newline.
func isHandshake(line string) bool {
	return strings.HasPrefix(line, "1|") && strings.HasSuffix(line, "\n") && strings.Count(line, "|") >= 5
}
