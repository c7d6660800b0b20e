package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wasmgate/wasmgate/abi"
)

// Feature is a set of http-wasm feature bits for EnableFeatures.
type Feature uint32

// Feature bits.
const (
	// FeatureBufferRequest buffers the request body so the plugin can read
	// and rewrite it and the upstream still receives it.
	FeatureBufferRequest = Feature(abi.FeatureBufferRequest)
	// FeatureBufferResponse buffers the whole response body before
	// OnResponse runs. Response.Body also buffers on demand.
	FeatureBufferResponse = Feature(abi.FeatureBufferResponse)
	// FeatureTrailers exposes trailers.
	FeatureTrailers = Feature(abi.FeatureTrailers)
)

// EnableFeatures turns on features and returns all features enabled now.
// Called from Configure it applies to every request; called from a handler,
// to the current request.
func EnableFeatures(f Feature) Feature { return Feature(hst().EnableFeatures(uint32(f))) }

// Property names for Property.
const (
	// PropClientAddr is the client's address, host:port.
	PropClientAddr = abi.PropertyClientAddr
	// PropClientIP is the client's IP address.
	PropClientIP = abi.PropertyClientIP
	// PropPeerID is the TLS peer's SPIFFE ID (URI SAN), if any.
	PropPeerID = abi.PropertyPeerID
	// PropPeerSubject is the TLS peer certificate's subject, if any.
	PropPeerSubject = abi.PropertyPeerSubject
	// PropSNI is the TLS server name the client asked for.
	PropSNI = abi.PropertySNI
	// PropRoute is the name of the matched route.
	PropRoute = abi.PropertyRoute
	// PropMode is the proxy's mode: edge or sidecar.
	PropMode = abi.PropertyMode
	// PropRequestID is the request's id.
	PropRequestID = abi.PropertyRequestID
	// PropTraceID is the W3C trace id.
	PropTraceID = abi.PropertyTraceID
	// PropListener is the name of the listener that accepted the request.
	PropListener = abi.PropertyListener
	// PropProtocol is the request's protocol (HTTP/1.1, HTTP/2.0, HTTP/3.0).
	PropProtocol = abi.PropertyProtocol
	// PropTLS is "true" when the connection is TLS.
	PropTLS = abi.PropertyTLS
)

// Property returns a request property (Prop* names) and whether the name
// is known. Known properties that do not apply to this request are found
// and empty: peer_id is "" without a verified mTLS peer.
func Property(name string) (string, bool) { return hst().Property(name) }

// Value returns a per-request value and whether it exists. Values live
// host-side for the life of one request and are shared by every filter in
// the route's chain, so a plugin can read what an earlier one set (for
// example "jwt.sub"). Prefix keys with your plugin's name.
func Value(key string) (string, bool) { return hst().Value(key) }

// SetValue stores a per-request value host-side; use it to carry data from
// OnRequest to OnResponse and to later filters.
func SetValue(key, value string) { hst().SetValue(key, value) }

// ErrStore is returned when the shared store (memory or Redis) failed.
var ErrStore = errors.New("sdk: store error")

// CounterIncr adds delta to the shared counter key and returns its new
// value and the time until it resets. A counter starts at 0 and expires
// window after its first increment (a fixed window: the rate-limit
// primitive). The host namespaces keys by the filter's name: a counter is
// shared by all instances of this filter, across routes that use the same
// filter name, and across proxies when the store is Redis.
func CounterIncr(key string, delta int64, window time.Duration) (value int64, ttl time.Duration, err error) {
	v, ttlMs, st := hst().CounterIncr(key, delta, window.Milliseconds())
	if err := statusErr("counter_incr", st); err != nil {
		return 0, 0, err
	}
	return v, time.Duration(ttlMs) * time.Millisecond, nil
}

// KVGet returns the shared value of key and whether it exists. Keys are
// namespaced by filter name like counters.
func KVGet(key string) (value []byte, found bool, err error) {
	v, f := hst().KVGet(key)
	switch f {
	case abi.Found:
		return v, true, nil
	case abi.Missing:
		return nil, false, nil
	default:
		return nil, false, fmt.Errorf("sdk: kv_get %q: %w", key, ErrStore)
	}
}

// KVSet stores a shared value; ttl 0 keeps it until deleted.
func KVSet(key string, value []byte, ttl time.Duration) error {
	return statusErr("kv_set", hst().KVSet(key, value, ttl.Milliseconds()))
}

// KVDelete removes a shared value; deleting a missing key is no error.
func KVDelete(key string) error {
	st := hst().KVDelete(key)
	if st == abi.StatusNotFound {
		return nil
	}
	return statusErr("kv_delete", st)
}

func statusErr(op string, st uint32) error {
	switch st {
	case abi.StatusOK:
		return nil
	case abi.StatusInvalid:
		return fmt.Errorf("sdk: %s: invalid argument", op)
	default:
		return fmt.Errorf("sdk: %s: status %d: %w", op, st, ErrStore)
	}
}

// ErrInvalidSignature is returned by VerifySignature when the signature
// does not match.
var ErrInvalidSignature = errors.New("sdk: invalid signature")

// VerifySignature checks sig over data natively in the host. alg is a JWS
// algorithm name (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
// ES512, EdDSA, HS256, HS384, HS512); key is a public key as DER (PKIX, or
// PKCS#1 for RSA), PEM or a JWK JSON object, or the raw shared secret for
// HS*. ES* signatures are JWS raw r||s. It returns nil when the signature is
// valid, ErrInvalidSignature when it is not, another error for a bad key or
// algorithm.
func VerifySignature(alg string, key, data, sig []byte) error {
	switch st := hst().VerifySignature(alg, key, data, sig); st {
	case abi.StatusOK:
		return nil
	case abi.StatusInvalid:
		return ErrInvalidSignature
	default:
		return fmt.Errorf("sdk: verify_signature %s: bad key or algorithm (status %d)", alg, st)
	}
}

// LogLevel is a log level for Log.
type LogLevel int32

// Log levels.
const (
	LevelDebug = LogLevel(abi.LogLevelDebug)
	LevelInfo  = LogLevel(abi.LogLevelInfo)
	LevelWarn  = LogLevel(abi.LogLevelWarn)
	LevelError = LogLevel(abi.LogLevelError)
)

// Log writes msg to the proxy's log at level, tagged with the plugin name.
func Log(level LogLevel, msg string) { hst().Log(int32(level), msg) }

// Logf formats and logs; the formatting is skipped when level is disabled.
func Logf(level LogLevel, format string, args ...any) {
	h := hst()
	if !h.LogEnabled(int32(level)) {
		return
	}
	h.Log(int32(level), fmt.Sprintf(format, args...))
}

// LogEnabled reports whether level is logged.
func LogEnabled(level LogLevel) bool { return hst().LogEnabled(int32(level)) }

// ConfigBytes returns the plugin's raw config: the route's filter config
// as JSON, or empty when there is none.
func ConfigBytes() []byte { return hst().Config() }

// Config decodes the plugin's JSON config into v, rejecting unknown
// fields. An empty config leaves v unchanged. Call it from Configure and
// return its error to refuse the config.
func Config(v any) error {
	return DecodeConfig(ConfigBytes(), v)
}

// DecodeConfig decodes JSON config bytes into v like Config.
func DecodeConfig(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if dec.More() {
		return errors.New("config: trailing data after JSON value")
	}
	return nil
}
