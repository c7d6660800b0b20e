package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/process"
)

// processFactories registers the filter kinds that run outside the Wasm
// sandbox (out-of-process plugins, kind "process"). It returns a closer
// that stops every plugin process still running.
func processFactories(r *filter.Registry, log *zap.Logger) (func(context.Context) error, error) {
	h, err := process.NewHost(process.Options{Logger: log.Named("process")})
	if err != nil {
		return nil, err
	}
	h.Register(r)
	return h.Close, nil
}
