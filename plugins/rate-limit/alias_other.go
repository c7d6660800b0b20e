//go:build !wasip1

package main

// hostString copies b: outside Wasm (sdktest, unit tests) the fake host
// keeps the strings it is given, so they must not alias reused memory.
func hostString(b []byte) string { return string(b) }
