//go:build race

package main_test

// raceBuild makes the integration tests build the binaries with the race
// detector when the tests themselves run with it.
const raceBuild = true
