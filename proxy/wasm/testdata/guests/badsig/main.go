//go:build wasip1

// Command badsig exports handle_request with the wrong signature; the host
// must refuse it at load with a message naming the export.
package main

//go:wasmexport handle_request
func handleRequest(x int32) int32 { return x }

//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {}

func main() {}
