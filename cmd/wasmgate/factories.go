package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/filter"
)

// processFactories registers the filter kinds that run outside the Wasm
// sandbox (out-of-process plugins). It returns a closer that stops them.
func processFactories(r *filter.Registry, log *zap.Logger) (func(context.Context) error, error) {
	return nil, nil
}
