// Package hostabi is the seam between the SDK's public API and whatever
// plays the host: the real proxy through Wasm imports (GOOS=wasip1) or the
// in-process fake of sdk/sdktest. It speaks Go values, not guest pointers.
package hostabi

import "sync"

// Host is everything the SDK asks of its host, one method per ABI function
// (http-wasm "http_handler" and the "wasmgate" extension).
type Host interface {
	// Log writes msg at level (abi.LogLevel values).
	Log(level int32, msg string)
	// LogEnabled reports whether level is logged.
	LogEnabled(level int32) bool
	// Config returns the plugin's config bytes (JSON by convention).
	Config() []byte
	// EnableFeatures turns on feature bits and returns all enabled bits.
	EnableFeatures(features uint32) uint32

	// Method returns the request method.
	Method() string
	// SetMethod replaces the request method.
	SetMethod(method string)
	// URI returns the request target (path and query).
	URI() string
	// SetURI replaces the request target.
	SetURI(uri string)
	// ProtocolVersion returns e.g. "HTTP/1.1".
	ProtocolVersion() string
	// SourceAddr returns the client's address (host:port).
	SourceAddr() string

	// HeaderNames lists the names in a header block (abi.HeaderKind).
	HeaderNames(kind uint32) []string
	// HeaderValues lists the values of name in a header block.
	HeaderValues(kind uint32, name string) []string
	// SetHeader replaces all values of name.
	SetHeader(kind uint32, name, value string)
	// AddHeader appends a value to name.
	AddHeader(kind uint32, name, value string)
	// RemoveHeader deletes name.
	RemoveHeader(kind uint32, name string)

	// ReadBody reads the whole body of kind (abi.BodyKind).
	ReadBody(kind uint32) []byte
	// WriteBody writes body; the first write in a phase replaces the body,
	// later writes append (http-wasm semantics).
	WriteBody(kind uint32, body []byte)
	// StatusCode returns the response status.
	StatusCode() uint32
	// SetStatusCode sets the response status.
	SetStatusCode(code uint32)

	// Property returns a request property and whether it exists.
	Property(name string) (string, bool)
	// Value returns a per-request value and whether it exists.
	Value(key string) (string, bool)
	// SetValue stores a per-request value host-side.
	SetValue(key, value string)
	// CounterIncr adds delta to a shared counter that expires window after
	// its first increment; it returns the new value, the remaining TTL in
	// milliseconds and an abi status.
	CounterIncr(key string, delta, windowMillis int64) (value, ttlMillis int64, status uint32)
	// KVGet returns a shared value and an abi found flag.
	KVGet(key string) (value []byte, found uint32)
	// KVSet stores a shared value with a TTL (0: none); abi status.
	KVSet(key string, value []byte, ttlMillis int64) uint32
	// KVDelete removes a shared value; abi status.
	KVDelete(key string) uint32
	// MetricDefine defines (or finds) a metric; negative id on error.
	MetricDefine(kind uint32, name, help string) int32
	// MetricRecord adds to a counter, sets a gauge or observes a histogram.
	MetricRecord(id int32, value float64)
	// DeclareStateless tells the host the guest keeps no per-request state.
	DeclareStateless()
	// DeclareRequestOnly tells the host the guest has no response phase.
	DeclareRequestOnly()
	// VerifySignature checks sig over data with key; abi status.
	VerifySignature(alg string, key, data, sig []byte) uint32
	// ConfigError refuses the plugin's config with msg.
	ConfigError(msg string)
}

// Plugin holds the hooks the SDK registers for the host side to call.
type Plugin struct {
	// Configure runs the plugin's config check; nil error accepts it.
	Configure func() error
	// Request runs the request phase; true continues to the next handler.
	Request func() bool
	// Response runs the response phase.
	Response func(isError bool)
	// WantsResponse reports whether the plugin hooks the response phase.
	WantsResponse bool
}

var (
	mu      sync.RWMutex
	current Host
	gen     uint64
	plugin  *Plugin
)

// SetHost installs h as the current host and returns a generation number
// that changes with every call (caches keyed by host use it).
func SetHost(h Host) uint64 {
	mu.Lock()
	defer mu.Unlock()
	current = h
	gen++
	return gen
}

// Current returns the current host (nil when none is installed) and its
// generation.
func Current() (Host, uint64) {
	mu.RLock()
	defer mu.RUnlock()
	return current, gen
}

// Register records the plugin's hooks (called by sdk.Handle).
func Register(p *Plugin) {
	mu.Lock()
	defer mu.Unlock()
	plugin = p
}

// Registered returns the hooks recorded by Register, or nil.
func Registered() *Plugin {
	mu.RLock()
	defer mu.RUnlock()
	return plugin
}
