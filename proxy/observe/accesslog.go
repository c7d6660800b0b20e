package observe

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

// AccessEntry is everything one access-log line says about a request.
type AccessEntry struct {
	// Start is when the request arrived.
	Start time.Time
	// Duration is how long it took until the response ended.
	Duration time.Duration
	// Method, Host, Path and Proto describe the request as received.
	Method, Host, Path, Proto string
	// Status is the final status sent (101 for an upgrade).
	Status int
	// BytesIn and BytesOut are request and response body bytes.
	BytesIn, BytesOut int64
	// ClientAddr is the downstream address.
	ClientAddr string
	// Listener is the name of the listener that accepted the request.
	Listener string
	// Route is the matched route's name, empty when none matched.
	Route string
	// Cluster is the upstream cluster, empty when no upstream was called.
	Cluster string
	// Upstream is the endpoint address that answered, if any.
	Upstream string
	// RequestID and TraceID correlate the line with other logs.
	RequestID, TraceID string
	// Decisions are the filters' verdicts, in the order they ran.
	Decisions []filter.Decision
	// Error is the proxy error that ended the request, if any.
	Error string
}

// AccessLog writes one JSON line per request through zap. Lines are
// buffered (at most about a second) and sampled: a Sample below 1 logs that
// fraction of requests, except that 5xx answers are always logged.
type AccessLog struct {
	log    *zap.Logger
	sample float64
	buf    *zapcore.BufferedWriteSyncer
	file   *os.File
	fields sync.Pool // *[accessFields]zap.Field
}

// accessFields is the number of fields of an access-log line.
const accessFields = 17

// NewAccessLog opens the access log cfg describes. It writes to stdout when
// cfg.Path is empty or "stdout" (to w when w is not nil, for tests), and
// appends to the file at cfg.Path otherwise. A disabled access log is nil
// (Log on a nil *AccessLog does nothing).
func NewAccessLog(cfg config.AccessLog, w io.Writer) (*AccessLog, error) {
	if cfg.Enabled != nil && !*cfg.Enabled {
		return nil, nil
	}
	sample := cfg.Sample
	if sample <= 0 || sample > 1 {
		if sample != 0 {
			return nil, fmt.Errorf("observe: access log sample must be in (0, 1], got %v", sample)
		}
		sample = 1
	}
	a := &AccessLog{sample: sample}
	a.fields.New = func() any { return new([accessFields]zap.Field) }
	switch {
	case cfg.Path != "" && cfg.Path != "stdout":
		f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("observe: open access log: %w", err)
		}
		a.file, w = f, f
	case w == nil:
		w = os.Stdout
	}
	a.buf = &zapcore.BufferedWriteSyncer{WS: pipeSafe{zapcore.AddSync(w)}, Size: 256 << 10, FlushInterval: time.Second}
	ec := zapcore.EncoderConfig{
		TimeKey:        "ts",
		MessageKey:     "msg",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeTime:     zapcore.RFC3339NanoTimeEncoder,
		EncodeDuration: millis,
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(ec), a.buf, zapcore.InfoLevel)
	a.log = zap.New(core)
	return a, nil
}

// pipeSafe ignores the error fsync gives for pipes and terminals: stdout
// piped into a log collector cannot be synced, and that is not a failure.
type pipeSafe struct{ zapcore.WriteSyncer }

func (p pipeSafe) Sync() error {
	err := p.WriteSyncer.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// Log writes e, subject to sampling.
func (a *AccessLog) Log(e *AccessEntry) {
	if a == nil {
		return
	}
	if a.sample < 1 && e.Status < 500 && rand.Float64() >= a.sample {
		return
	}
	ce := a.log.Check(zapcore.InfoLevel, "access")
	if ce == nil {
		return
	}
	ce.Time = e.Start
	fields := a.fields.Get().(*[accessFields]zap.Field)
	*fields = [accessFields]zap.Field{
		zap.String("method", e.Method),
		zap.String("host", e.Host),
		zap.String("path", e.Path),
		zap.String("proto", e.Proto),
		zap.Int("status", e.Status),
		zap.Int64("bytes_in", e.BytesIn),
		zap.Int64("bytes_out", e.BytesOut),
		zap.Duration("duration_ms", e.Duration),
		zap.String("client", e.ClientAddr),
		zap.String("listener", e.Listener),
		zap.String("route", e.Route),
		zap.String("cluster", e.Cluster),
		zap.String("upstream", e.Upstream),
		zap.String("request_id", e.RequestID),
		zap.String("trace_id", e.TraceID),
		zap.Array("filters", decisions(e.Decisions)),
		zap.String("error", e.Error),
	}
	n := accessFields
	if len(e.Decisions) == 0 {
		fields[n-2], n = fields[n-1], n-1
	}
	if e.Error == "" {
		n--
	}
	ce.Write(fields[:n]...)
	*fields = [accessFields]zap.Field{} // drop references to the request's strings
	a.fields.Put(fields)
}

// Sync flushes buffered lines.
func (a *AccessLog) Sync() error {
	if a == nil {
		return nil
	}
	return a.buf.Sync()
}

// Close flushes buffered lines, stops the flush timer and closes the file.
func (a *AccessLog) Close() error {
	if a == nil {
		return nil
	}
	err := a.buf.Stop()
	if a.file != nil {
		if cerr := a.file.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("observe: close access log: %w", err)
	}
	return nil
}

// decisions marshals filter decisions as a JSON array without copying.
type decisions []filter.Decision

func (ds decisions) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for i := range ds {
		if err := enc.AppendObject(decision(ds[i])); err != nil {
			return err
		}
	}
	return nil
}

type decision filter.Decision

func (d decision) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("filter", d.Filter)
	enc.AddString("action", d.Action)
	if d.Status != 0 {
		enc.AddInt("status", d.Status)
	}
	enc.AddFloat64("took_ms", float64(d.Took)/float64(time.Millisecond))
	return nil
}

// millis encodes a duration as fractional milliseconds.
func millis(d time.Duration, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendFloat64(float64(d) / float64(time.Millisecond))
}
