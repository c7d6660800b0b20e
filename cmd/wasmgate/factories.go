package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/process"
)

// processPlugins owns the host of out-of-process plugins (kind
// "process") for one gateway or one validate run.
type processPlugins struct{ h *process.Host }

// register adds kind "process" to r. It returns a closer that stops every
// plugin process still running.
func (p *processPlugins) register(r *filter.Registry, log *zap.Logger) (func(context.Context) error, error) {
	h, err := process.NewHost(process.Options{Logger: log.Named("process")})
	if err != nil {
		return nil, err
	}
	h.Register(r)
	p.h = h
	return h.Close, nil
}

// status lists the process plugins for /plugins.
func (p *processPlugins) status() []any {
	if p.h == nil {
		return nil
	}
	sts := p.h.Plugins()
	out := make([]any, 0, len(sts))
	for _, st := range sts {
		out = append(out, st)
	}
	return out
}
