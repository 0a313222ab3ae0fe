//go:build cgo

package main

// cgoEnabled reports whether this binary was built with cgo, and so with
// RocksDB.
const cgoEnabled = true
