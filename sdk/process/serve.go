//go:build !wasip1

// Package process runs a plugin written with the wasmgate SDK as an
// out-of-process plugin (filter kind "process") instead of a Wasm module.
// The plugin's source does not change: its main package registers its
// handler with sdk.Handle from init as usual, and one extra file, built
// only with the wasmgate_process tag, hands control to this package:
//
//	//go:build wasmgate_process
//
//	package main
//
//	import "github.com/wasmgate/wasmgate/sdk/process"
//
//	func init() { process.ServeIfLaunched() }
//
// Build the Wasm module as before and the process plugin with
//
//	go build -tags wasmgate_process -o my-plugin .
//
// Name the file so it sorts after the file that calls sdk.Handle (Go runs a
// package's init functions in file name order); process_plugin.go after
// main.go works.
//
// The proxy starts the executable through hashicorp/go-plugin over gRPC.
// For every request phase it sends the method, URI, headers, status,
// properties and per-request values in one call; the handler runs here
// against that copy and the changes go back in the answer. Bodies, the
// shared store, metrics and logs are calls back into the proxy over
// go-plugin's broker. The SDK's host is process-wide, so handler calls are
// serialized within one plugin process.
package process

import (
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/wasmgate/wasmgate/abi/pluginpb"
	"github.com/wasmgate/wasmgate/abi/wire"
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

// Launched reports whether the process was started by wasmgate as a
// process plugin (the go-plugin magic cookie is in the environment).
func Launched() bool { return os.Getenv(wire.CookieKey) == wire.CookieValue }

// ServeIfLaunched serves the registered handler and exits when the process
// was launched by wasmgate; otherwise (go test, a run by hand) it returns
// at once.
func ServeIfLaunched() {
	if !Launched() {
		return
	}
	Serve()
	os.Exit(0)
}

// Serve serves the handler registered with sdk.Handle until the proxy
// stops the plugin or goes away. It exits the process with status 1 when no
// handler is registered.
func Serve() {
	p := hostabi.Registered()
	if p == nil {
		fmt.Fprintln(os.Stderr, "sdk/process: no handler registered: call sdk.Handle from init in a file that sorts before the one calling process.Serve")
		os.Exit(1)
	}
	go exitWithParent(os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake(),
		Plugins: plugin.PluginSet{wire.PluginName: &wire.GRPCPlugin{
			NewServer: func(b *plugin.GRPCBroker) pluginpb.FilterServer { return newServer(p, b) },
		}},
		GRPCServer: plugin.DefaultGRPCServer,
	})
}

// exitWithParent ends the plugin when the proxy that started it is gone
// (killed without a chance to stop its plugins): the parent changes.
func exitWithParent(ppid int, every time.Duration) {
	for {
		time.Sleep(every)
		if os.Getppid() != ppid {
			os.Exit(0)
		}
	}
}
