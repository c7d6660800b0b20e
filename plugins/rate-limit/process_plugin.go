//go:build wasmgate_process

package main

import "github.com/wasmgate/wasmgate/sdk/process"

// Built with -tags wasmgate_process this same package is a process plugin
// (filter kind "process"): the handler registered in main.go's init is
// served over go-plugin. This file sorts after main.go, so that init has
// run.
func init() { process.ServeIfLaunched() }
