// Package testplugins holds small plugin binaries used by the tests of the
// plugin host and the certification cases: one main package per
// misbehaviour. They are built by the tests (go build) and never shipped;
// no other package may import them.
//
//   - memory:   the in-memory reference engine served with the SDK
//   - stray:    an engine that writes to standard output while opening and
//     on every Apply (the SDK must keep that out of the handshake)
//   - hang:     never completes the handshake (and starts a child process in
//     its process group, which the host must kill too)
//   - badproto: speaks another engine protocol version
//   - crashy:   the memory engine, exiting (key "__crash__"), panicking
//     on a goroutine (key "__panic__") or stopping itself with SIGSTOP (key
//     "__freeze__") when such a key is written
//   - rawout:   served with go-plugin directly (no SDK), writing 100 KiB
//     without a newline to file descriptor 1 on every Apply
//   - forgetful: breaks the contract (Read loses every key), for certification
//     to fail
//   - nameless: the memory engine describing itself with an empty name, for
//     certification's handshake case to fail on the self-description
package testplugins
