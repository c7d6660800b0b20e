//go:build wasip1

// Package hw declares the host functions of the http_handler and wasmgate
// modules for the test guests. It is deliberately raw (no SDK) so the host
// is tested against the ABI itself, including misuse.
package hw

import "unsafe"

// http_handler imports.

//go:wasmimport http_handler log
func Log(level int32, msg unsafe.Pointer, msgLen uint32)

//go:wasmimport http_handler log_enabled
func LogEnabled(level int32) uint32

//go:wasmimport http_handler get_config
func GetConfig(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler enable_features
func EnableFeatures(f uint32) uint32

//go:wasmimport http_handler get_method
func GetMethod(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler set_method
func SetMethod(p unsafe.Pointer, n uint32)

//go:wasmimport http_handler get_uri
func GetURI(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler set_uri
func SetURI(p unsafe.Pointer, n uint32)

//go:wasmimport http_handler get_protocol_version
func GetProtocolVersion(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_header_names
func GetHeaderNames(kind uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler get_header_values
func GetHeaderValues(kind uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler set_header_value
func SetHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, val unsafe.Pointer, valLen uint32)

//go:wasmimport http_handler add_header_value
func AddHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, val unsafe.Pointer, valLen uint32)

//go:wasmimport http_handler remove_header
func RemoveHeader(kind uint32, name unsafe.Pointer, nameLen uint32)

//go:wasmimport http_handler read_body
func ReadBody(kind uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler write_body
func WriteBody(kind uint32, buf unsafe.Pointer, n uint32)

//go:wasmimport http_handler get_status_code
func GetStatusCode() uint32

//go:wasmimport http_handler set_status_code
func SetStatusCode(code uint32)

//go:wasmimport http_handler get_source_addr
func GetSourceAddr(buf unsafe.Pointer, limit uint32) uint32

// wasmgate imports.

//go:wasmimport wasmgate get_property
func GetProperty(name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport wasmgate get_value
func GetValue(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport wasmgate set_value
func SetValue(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32)

//go:wasmimport wasmgate counter_incr
func CounterIncr(key unsafe.Pointer, keyLen uint32, delta int64, windowMS int64, out unsafe.Pointer) uint32

//go:wasmimport wasmgate kv_get
func KVGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport wasmgate kv_set
func KVSet(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32, ttlMS int64) uint32

//go:wasmimport wasmgate kv_delete
func KVDelete(key unsafe.Pointer, keyLen uint32) uint32

//go:wasmimport wasmgate metric_define
func MetricDefine(kind uint32, name unsafe.Pointer, nameLen uint32, help unsafe.Pointer, helpLen uint32) int32

//go:wasmimport wasmgate metric_record
func MetricRecord(id int32, v float64)

//go:wasmimport wasmgate declare_stateless
func DeclareStateless()

//go:wasmimport wasmgate verify_signature
func VerifySignature(alg unsafe.Pointer, algLen uint32, key unsafe.Pointer, keyLen uint32, data unsafe.Pointer, dataLen uint32, sig unsafe.Pointer, sigLen uint32) uint32

//go:wasmimport wasmgate config_error
func ConfigError(msg unsafe.Pointer, msgLen uint32)

// Ptr returns the address and length of s for a host call.
func Ptr(s string) (unsafe.Pointer, uint32) {
	if len(s) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

// BPtr returns the address of b's first byte (nil when empty).
func BPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// Get calls a (buf, limit) -> len function, growing the buffer once.
func Get(fn func(unsafe.Pointer, uint32) uint32) string {
	var small [64]byte
	n := fn(unsafe.Pointer(&small[0]), uint32(len(small)))
	if n <= uint32(len(small)) {
		return string(small[:n])
	}
	buf := make([]byte, n)
	n = fn(BPtr(buf), n)
	return string(buf[:n])
}

// Get64 calls a (buf, limit) -> i64 x<<32|len function, growing once.
func Get64(fn func(unsafe.Pointer, uint32) uint64) (hi uint32, val string) {
	var small [64]byte
	r := fn(unsafe.Pointer(&small[0]), uint32(len(small)))
	n := uint32(r)
	if n <= uint32(len(small)) {
		return uint32(r >> 32), string(small[:n])
	}
	buf := make([]byte, n)
	r = fn(BPtr(buf), n)
	return uint32(r >> 32), string(buf[:uint32(r)])
}

// SetHeader sets header name to val in kind.
func SetHeader(kind uint32, name, val string) {
	np, nl := Ptr(name)
	vp, vl := Ptr(val)
	SetHeaderValue(kind, np, nl, vp, vl)
}

// AddHeader adds val to header name in kind.
func AddHeader(kind uint32, name, val string) {
	np, nl := Ptr(name)
	vp, vl := Ptr(val)
	AddHeaderValue(kind, np, nl, vp, vl)
}

// Header returns the NUL-separated values of header name in kind.
func Header(kind uint32, name string) (count uint32, raw string) {
	np, nl := Ptr(name)
	return Get64(func(b unsafe.Pointer, l uint32) uint64 { return GetHeaderValues(kind, np, nl, b, l) })
}

// URI returns the request URI.
func URI() string { return Get(GetURI) }

// Config returns the guest config bytes.
func Config() string { return Get(GetConfig) }

// LogString logs s at level.
func LogString(level int32, s string) {
	p, n := Ptr(s)
	Log(level, p, n)
}

// WriteBodyString writes s to the body of kind.
func WriteBodyString(kind uint32, s string) {
	p, n := Ptr(s)
	WriteBody(kind, p, n)
}

//go:wasmimport wasmgate declare_request_only
func DeclareRequestOnly()
