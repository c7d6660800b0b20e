package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/abi/pluginpb"
	"github.com/wasmgate/wasmgate/proxy/filter"
	"github.com/wasmgate/wasmgate/proxy/observe"
)

// maxStoreValue bounds a key plus value in the shared store, as for Wasm.
const maxStoreValue = 1 << 20

// hostService is the proxy side of the Host service for one plugin: the
// exchanges of in-flight calls, the store (keys namespaced by plugin name),
// metrics and the log.
type hostService struct {
	pluginpb.UnimplementedHostServer
	h      *Host
	p      *proc
	store  filter.Store
	reg    prometheus.Registerer
	prefix string

	mu      sync.Mutex
	calls   map[uint64]*callRef
	metrics []observe.PluginSeries
	ids     map[string]int32
}

// callRef is one in-flight call: its exchange and phase. mu orders a
// callback's use of the exchange before the caller's (the two only meet
// through the plugin process, which the race detector cannot see).
type callRef struct {
	mu       sync.Mutex
	x        *filter.Exchange
	response bool
	done     bool // the caller moved on (the call ended or timed out)
}

func newHostService(h *Host, p *proc, deps filter.Deps) *hostService {
	return &hostService{h: h, p: p, store: deps.Store, reg: deps.Metrics, prefix: "process/" + p.name + "/",
		calls: map[uint64]*callRef{}, ids: map[string]int32{}}
}

func (s *hostService) begin(x *filter.Exchange, response bool) uint64 {
	id := s.h.nextCall.Add(1)
	s.mu.Lock()
	s.calls[id] = &callRef{x: x, response: response}
	s.mu.Unlock()
	return id
}

func (s *hostService) end(id uint64) {
	s.mu.Lock()
	c := s.calls[id]
	delete(s.calls, id)
	s.mu.Unlock()
	if c != nil {
		c.mu.Lock()
		c.done = true
		c.mu.Unlock()
	}
}

// ReadBody buffers and returns a body of an in-flight exchange.
func (s *hostService) ReadBody(_ context.Context, req *pluginpb.BodyRequest) (*pluginpb.BodyResponse, error) {
	s.mu.Lock()
	c := s.calls[req.CallId]
	s.mu.Unlock()
	if c == nil {
		return &pluginpb.BodyResponse{Error: "no such call (it ended)"}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return &pluginpb.BodyResponse{Error: "no such call (it ended)"}, nil
	}
	x := c.x
	switch abi.BodyKind(req.Kind) {
	case abi.BodyKindRequest:
		b, err := x.RequestBody()
		if err != nil {
			return &pluginpb.BodyResponse{Error: "request: " + err.Error()}, nil
		}
		return &pluginpb.BodyResponse{Body: b}, nil
	case abi.BodyKindResponse:
		if !c.response {
			b, _ := x.Response.Buffered()
			return &pluginpb.BodyResponse{Body: b}, nil
		}
		b, err := x.Response.BufferBody(bodyCap(x.BodyCap))
		if err != nil {
			return &pluginpb.BodyResponse{Error: "response: " + err.Error()}, nil
		}
		return &pluginpb.BodyResponse{Body: b}, nil
	}
	return &pluginpb.BodyResponse{Error: fmt.Sprintf("unknown body kind %d", req.Kind)}, nil
}

func bodyCap(c int64) int64 {
	if c <= 0 {
		return filter.DefaultBodyCap
	}
	return c
}

func (s *hostService) storeErr(op string, err error) {
	if ce := s.p.log.Check(zapcore.WarnLevel, "plugin store call failed"); ce != nil {
		ce.Write(zap.String("op", op), zap.Error(err))
	}
}

// CounterIncr adds to a shared counter.
func (s *hostService) CounterIncr(ctx context.Context, req *pluginpb.CounterRequest) (*pluginpb.CounterResponse, error) {
	if req.WindowMillis <= 0 || req.Key == "" || len(req.Key) > maxStoreValue {
		return &pluginpb.CounterResponse{Status: abi.StatusInvalid}, nil
	}
	if s.store == nil {
		return &pluginpb.CounterResponse{Status: abi.StatusError}, nil
	}
	v, ttl, err := s.store.Incr(ctx, s.prefix+req.Key, req.Delta, time.Duration(req.WindowMillis)*time.Millisecond)
	if err != nil {
		s.storeErr("counter_incr", err)
		return &pluginpb.CounterResponse{Status: abi.StatusError}, nil
	}
	return &pluginpb.CounterResponse{Value: v, TtlMillis: ttl.Milliseconds(), Status: abi.StatusOK}, nil
}

// KVGet reads a shared value.
func (s *hostService) KVGet(ctx context.Context, req *pluginpb.KVRequest) (*pluginpb.KVResponse, error) {
	if req.Key == "" {
		return &pluginpb.KVResponse{Found: abi.Missing}, nil
	}
	if s.store == nil {
		return &pluginpb.KVResponse{Found: abi.StoreError}, nil
	}
	v, ok, err := s.store.Get(ctx, s.prefix+req.Key)
	switch {
	case err != nil:
		s.storeErr("kv_get", err)
		return &pluginpb.KVResponse{Found: abi.StoreError}, nil
	case !ok:
		return &pluginpb.KVResponse{Found: abi.Missing}, nil
	}
	return &pluginpb.KVResponse{Value: v, Found: abi.Found}, nil
}

// KVSet stores a shared value.
func (s *hostService) KVSet(ctx context.Context, req *pluginpb.KVRequest) (*pluginpb.StatusResponse, error) {
	if req.Key == "" || req.TtlMillis < 0 || len(req.Key)+len(req.Value) > maxStoreValue {
		return &pluginpb.StatusResponse{Status: abi.StatusInvalid}, nil
	}
	if s.store == nil {
		return &pluginpb.StatusResponse{Status: abi.StatusError}, nil
	}
	if err := s.store.Set(ctx, s.prefix+req.Key, req.Value, time.Duration(req.TtlMillis)*time.Millisecond); err != nil {
		s.storeErr("kv_set", err)
		return &pluginpb.StatusResponse{Status: abi.StatusError}, nil
	}
	return &pluginpb.StatusResponse{Status: abi.StatusOK}, nil
}

// KVDelete removes a shared value.
func (s *hostService) KVDelete(ctx context.Context, req *pluginpb.KVRequest) (*pluginpb.StatusResponse, error) {
	if req.Key == "" {
		return &pluginpb.StatusResponse{Status: abi.StatusInvalid}, nil
	}
	if s.store == nil {
		return &pluginpb.StatusResponse{Status: abi.StatusError}, nil
	}
	if err := s.store.Delete(ctx, s.prefix+req.Key); err != nil {
		s.storeErr("kv_delete", err)
		return &pluginpb.StatusResponse{Status: abi.StatusError}, nil
	}
	return &pluginpb.StatusResponse{Status: abi.StatusOK}, nil
}

// Log writes a plugin log line.
func (s *hostService) Log(_ context.Context, req *pluginpb.LogRequest) (*pluginpb.Empty, error) {
	lvl := zapcore.ErrorLevel
	switch {
	case req.Level <= int32(abi.LogLevelDebug):
		lvl = zapcore.DebugLevel
	case req.Level == int32(abi.LogLevelInfo):
		lvl = zapcore.InfoLevel
	case req.Level == int32(abi.LogLevelWarn):
		lvl = zapcore.WarnLevel
	}
	msg := req.Msg
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	if ce := s.p.log.Check(lvl, msg); ce != nil {
		ce.Write()
	}
	return &pluginpb.Empty{}, nil
}

// maxMetrics bounds the metrics one plugin may define.
const maxMetrics = 256

// MetricDefine defines (or finds) a plugin metric labelled with the plugin name.
func (s *hostService) MetricDefine(_ context.Context, req *pluginpb.MetricDefineRequest) (*pluginpb.MetricDefineResponse, error) {
	id, err := s.define(req.Kind, req.Name, req.Help)
	if err != nil {
		s.p.log.Warn("plugin metric refused", zap.String("metric", req.Name), zap.Error(err))
		return &pluginpb.MetricDefineResponse{Id: -1}, nil
	}
	return &pluginpb.MetricDefineResponse{Id: id}, nil
}

func (s *hostService) define(kind uint32, name, help string) (int32, error) {
	ok := observe.PluginMetricKind(kind)
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, found := s.ids[name]; found {
		if s.metrics[id].Kind() != ok {
			return -1, errors.New("already defined with another kind")
		}
		return id, nil
	}
	if len(s.metrics) >= maxMetrics {
		return -1, fmt.Errorf("more than %d metrics", maxMetrics)
	}
	f, err := s.h.families(s.reg).Family(ok, name, help)
	if err != nil {
		return -1, err
	}
	m, err := f.Series(s.p.name)
	if err != nil {
		return -1, err
	}
	s.metrics = append(s.metrics, m)
	id := int32(len(s.metrics) - 1)
	s.ids[name] = id
	return id, nil
}

// MetricRecord records one value.
func (s *hostService) MetricRecord(_ context.Context, req *pluginpb.MetricRecordRequest) (*pluginpb.Empty, error) {
	s.record(req.Id, req.Value)
	return &pluginpb.Empty{}, nil
}

func (s *hostService) record(id int32, v float64) {
	s.mu.Lock()
	if id < 0 || int(id) >= len(s.metrics) {
		s.mu.Unlock()
		return
	}
	m := s.metrics[id]
	s.mu.Unlock()
	m.Record(v)
}

// families returns the plugin metric families registered with reg.
func (h *Host) families(reg prometheus.Registerer) *observe.PluginFamilies {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.fams[reg]
	if !ok {
		f = observe.NewPluginFamilies(reg)
		h.fams[reg] = f
	}
	return f
}

// checkSHA compares the file's sha256 with the pinned hex digest.
func checkSHA(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("process: plugin %s: %w", path, err)
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return fmt.Errorf("process: plugin %s: %w", path, err)
	}
	got := hex.EncodeToString(sum.Sum(nil))
	if !strings.EqualFold(got, want) {
		return fmt.Errorf("process: plugin %s: sha256 %s does not match the pinned %s", path, got, want)
	}
	return nil
}
