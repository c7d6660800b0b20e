// Package abi holds the names and numbers of the plugin ABI shared by the
// host (proxy/wasm) and the guest SDK (sdk/). It has no dependencies so the
// SDK can import it when built for GOOS=wasip1.
//
// Two host modules exist. "http_handler" is the published http-wasm handler
// ABI, so foreign http-wasm guests run unchanged. "wasmgate" is our
// extension for what http-wasm lacks.
//
// Buffer convention (both modules): a function that fills a guest buffer
// takes (buf, buf_limit) and returns the length the full value needs. If that
// is larger than buf_limit nothing is written and the guest retries with a
// buffer of that size.
package abi

// Host module names.
const (
	ModuleHTTPHandler = "http_handler"
	ModuleWasmgate    = "wasmgate"
)

// Guest exports (http-wasm).
const (
	// ExportHandleRequest: () -> i64. The high 32 bits are a request context
	// handed back to handle_response; the low 32 bits are 1 to continue to the
	// next handler, 0 when the guest wrote the response itself.
	ExportHandleRequest = "handle_request"
	// ExportHandleResponse: (req_ctx i32, is_error i32) -> ().
	ExportHandleResponse = "handle_response"
	// ExportInitialize is run once per instance for Go wasip1 reactors.
	ExportInitialize = "_initialize"
	// ExportStart is TinyGo's command entry; accepted for foreign guests.
	ExportStart = "_start"
	// ExportMemory is the guest's linear memory.
	ExportMemory = "memory"
	// ExportCheckConfig: () -> i32, optional. Called once per instance after
	// _initialize/_start; nonzero refuses the config (the message is the one
	// given to config_error, if any). Guests may instead call config_error
	// during _initialize.
	ExportCheckConfig = "check_config"
)

// http_handler functions (the published http-wasm handler ABI).
const (
	FuncLog                = "log"                  // (level i32, buf i32, len i32)
	FuncLogEnabled         = "log_enabled"          // (level i32) -> i32
	FuncGetConfig          = "get_config"           // (buf, limit) -> len i32
	FuncEnableFeatures     = "enable_features"      // (features i32) -> i32 enabled
	FuncGetMethod          = "get_method"           // (buf, limit) -> len
	FuncSetMethod          = "set_method"           // (ptr, len)
	FuncGetURI             = "get_uri"              // (buf, limit) -> len
	FuncSetURI             = "set_uri"              // (ptr, len)
	FuncGetProtocolVersion = "get_protocol_version" // (buf, limit) -> len
	FuncGetHeaderNames     = "get_header_names"     // (kind, buf, limit) -> i64 count<<32|len, NUL-terminated names
	FuncGetHeaderValues    = "get_header_values"    // (kind, name, name_len, buf, limit) -> i64 count<<32|len
	FuncSetHeaderValue     = "set_header_value"     // (kind, name, name_len, value, value_len)
	FuncAddHeaderValue     = "add_header_value"     // (kind, name, name_len, value, value_len)
	FuncRemoveHeader       = "remove_header"        // (kind, name, name_len)
	FuncReadBody           = "read_body"            // (kind, buf, limit) -> i64 eof<<32|len
	FuncWriteBody          = "write_body"           // (kind, buf, len)
	FuncGetStatusCode      = "get_status_code"      // () -> i32
	FuncSetStatusCode      = "set_status_code"      // (i32)
	FuncGetSourceAddr      = "get_source_addr"      // (buf, limit) -> len
)

// HeaderKind selects which header block a header function works on.
type HeaderKind uint32

// Header kinds.
const (
	HeaderKindRequest          HeaderKind = 0
	HeaderKindResponse         HeaderKind = 1
	HeaderKindRequestTrailers  HeaderKind = 2
	HeaderKindResponseTrailers HeaderKind = 3
)

// BodyKind selects the request or the response body.
type BodyKind uint32

// Body kinds.
const (
	BodyKindRequest  BodyKind = 0
	BodyKindResponse BodyKind = 1
)

// Features are bits for enable_features.
type Features uint32

// Feature bits.
const (
	FeatureBufferRequest  Features = 1 << 0
	FeatureBufferResponse Features = 1 << 1
	FeatureTrailers       Features = 1 << 2
)

// LogLevel is the http-wasm log level (signed).
type LogLevel int32

// Log levels.
const (
	LogLevelDebug LogLevel = -1
	LogLevelInfo  LogLevel = 0
	LogLevelWarn  LogLevel = 1
	LogLevelError LogLevel = 2
	LogLevelNone  LogLevel = 3
)

// wasmgate extension functions. Strings are (ptr, len) pairs; lookups that may
// miss return i64 found<<32|len (found: 0 missing, 1 found, 2 store error).
const (
	// (name, name_len, buf, limit) -> i64 found<<32|len. Names in Property*.
	FuncGetProperty = "get_property"
	// (key, key_len, buf, limit) -> i64 found<<32|len. Per-request value.
	FuncGetValue = "get_value"
	// (key, key_len, val, val_len). Per-request value, kept host-side.
	FuncSetValue = "set_value"
	// (key, key_len, delta i64, window_ms i64, out i32) -> i32 status.
	// Writes value i64 LE then ttl_ms i64 LE at out (16 bytes).
	FuncCounterIncr = "counter_incr"
	// (key, key_len, buf, limit) -> i64 found<<32|len.
	FuncKVGet = "kv_get"
	// (key, key_len, val, val_len, ttl_ms i64) -> i32 status.
	FuncKVSet = "kv_set"
	// (key, key_len) -> i32 status.
	FuncKVDelete = "kv_delete"
	// (kind i32, name, name_len, help, help_len) -> i32 id (negative on error).
	FuncMetricDefine = "metric_define"
	// (id i32, value f64): counter add, gauge set, histogram observe.
	FuncMetricRecord = "metric_record"
	// () -> (). The guest keeps no per-request state in its memory between
	// phases, so the host may release the instance after each call.
	FuncDeclareStateless = "declare_stateless"
	// (alg, alg_len, key, key_len, data, data_len, sig, sig_len) -> i32
	// status: StatusOK valid, StatusInvalid the signature does not verify,
	// StatusError unknown alg or unusable key. Algorithms: RS256/384/512,
	// PS256/384/512, ES256/384/512, EdDSA (Ed25519), HS256/384/512. key is a
	// public key as DER (PKIX SubjectPublicKeyInfo, or PKCS#1 for RSA), PEM,
	// or a JWK JSON object; for HS* it is the raw shared secret. ES* sigs are
	// JWS raw r||s, not ASN.1.
	FuncVerifySignature = "verify_signature"
	// () -> (). Called during _initialize: the guest's handle_response does
	// nothing, so the host skips calling it (one guest call per request).
	FuncDeclareRequestOnly = "declare_request_only"
	// (msg, msg_len) -> (). Called by the guest while it checks its config
	// (during _initialize for SDK guests) to refuse that config; the host
	// fails the load and reports msg. Added by sdk/.
	FuncConfigError = "config_error"
)

// Status codes returned by wasmgate functions.
const (
	StatusOK       uint32 = 0
	StatusNotFound uint32 = 1
	StatusError    uint32 = 2
	StatusInvalid  uint32 = 3
)

// Found flags in the high 32 bits of lookup results.
const (
	Missing    uint32 = 0
	Found      uint32 = 1
	StoreError uint32 = 2
)

// MetricKind is the kind passed to metric_define.
type MetricKind uint32

// Metric kinds.
const (
	MetricCounter   MetricKind = 0
	MetricGauge     MetricKind = 1
	MetricHistogram MetricKind = 2
)

// Property names for get_property.
const (
	PropertyClientAddr  = "client_addr"
	PropertyClientIP    = "client_ip"
	PropertyPeerID      = "peer_id"
	PropertyPeerSubject = "peer_subject"
	PropertySNI         = "sni"
	PropertyRoute       = "route"
	PropertyMode        = "mode"
	PropertyRequestID   = "request_id"
	PropertyTraceID     = "trace_id"
	PropertyListener    = "listener"
	PropertyProtocol    = "protocol"
	PropertyTLS         = "tls"
)
