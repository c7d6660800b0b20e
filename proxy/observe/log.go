// Package observe holds wasmgate's observability parts: the process logger,
// the access log, Prometheus metrics, a response writer wrapper that counts
// what a handler wrote, and request ids. W3C trace context lives in the
// subpackage trace.
package observe

import (
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ParseLevel turns "debug", "info", "warn" or "error" into a zap level.
func ParseLevel(level string) (zapcore.Level, error) {
	switch level {
	case "debug", "info", "warn", "error":
		l, err := zapcore.ParseLevel(level)
		if err != nil {
			return zapcore.InfoLevel, fmt.Errorf("observe: log level %q: %w", level, err)
		}
		return l, nil
	}
	return zapcore.InfoLevel, fmt.Errorf("observe: log level must be debug, info, warn or error, got %q", level)
}

// NewLogger builds the process logger: JSON lines (format "json", the
// default) or human-readable console lines (format "console"), written to out
// (stderr when nil). The returned AtomicLevel changes the level of the logger
// and every logger derived from it at runtime (the admin API uses it).
// Errors carry no stack traces; a burst of identical messages is sampled
// (the first 100 per second, then one in 100) so a storm cannot flood the log.
func NewLogger(level, format string, out io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	atom := zap.NewAtomicLevelAt(lvl)
	var enc zapcore.Encoder
	switch format {
	case "", "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		ec.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		ec.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, zap.AtomicLevel{}, fmt.Errorf("observe: log format must be json or console, got %q", format)
	}
	if out == nil {
		out = os.Stderr
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), atom)
	core = zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)
	log := zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.DPanicLevel),
		zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(os.Stderr))))
	return log, atom, nil
}

// NewRequestID returns a random request id of 32 lowercase hex digits.
func NewRequestID() string {
	var b [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (8 * i))
		b[8+i] = byte(lo >> (8 * i))
	}
	var out [32]byte
	hex.Encode(out[:], b[:])
	return string(out[:])
}
