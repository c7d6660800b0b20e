//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

// The guest glue: imports of the http-wasm "http_handler" module and of the
// "wasmgate" extension module, and the handle_request / handle_response
// exports. Only functions the program reaches end up imported.

//go:wasmimport http_handler log
func hhLog(level int32, msg unsafe.Pointer, msgLen uint32)

//go:wasmimport http_handler log_enabled
func hhLogEnabled(level int32) uint32

//go:wasmimport http_handler get_config
func hhGetConfig(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler enable_features
func hhEnableFeatures(features uint32) uint32

//go:wasmimport http_handler get_method
func hhGetMethod(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler set_method
func hhSetMethod(p unsafe.Pointer, n uint32)

//go:wasmimport http_handler get_uri
func hhGetURI(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler set_uri
func hhSetURI(p unsafe.Pointer, n uint32)

//go:wasmimport http_handler get_protocol_version
func hhGetProtocolVersion(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_source_addr
func hhGetSourceAddr(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_header_names
func hhGetHeaderNames(kind uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler get_header_values
func hhGetHeaderValues(kind uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler set_header_value
func hhSetHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)

//go:wasmimport http_handler add_header_value
func hhAddHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)

//go:wasmimport http_handler remove_header
func hhRemoveHeader(kind uint32, name unsafe.Pointer, nameLen uint32)

//go:wasmimport http_handler read_body
func hhReadBody(kind uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler write_body
func hhWriteBody(kind uint32, body unsafe.Pointer, bodyLen uint32)

//go:wasmimport http_handler get_status_code
func hhGetStatusCode() uint32

//go:wasmimport http_handler set_status_code
func hhSetStatusCode(code uint32)

//go:wasmimport wasmgate get_property
func wgGetProperty(name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport wasmgate get_value
func wgGetValue(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport wasmgate set_value
func wgSetValue(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32)

//go:wasmimport wasmgate counter_incr
func wgCounterIncr(key unsafe.Pointer, keyLen uint32, delta, windowMillis int64, out unsafe.Pointer) uint32

//go:wasmimport wasmgate kv_get
func wgKVGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport wasmgate kv_set
func wgKVSet(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32, ttlMillis int64) uint32

//go:wasmimport wasmgate kv_delete
func wgKVDelete(key unsafe.Pointer, keyLen uint32) uint32

//go:wasmimport wasmgate metric_define
func wgMetricDefine(kind uint32, name unsafe.Pointer, nameLen uint32, help unsafe.Pointer, helpLen uint32) int32

//go:wasmimport wasmgate metric_record
func wgMetricRecord(id int32, value float64)

//go:wasmimport wasmgate declare_stateless
func wgDeclareStateless()

//go:wasmimport wasmgate declare_request_only
func wgDeclareRequestOnly()

//go:wasmimport wasmgate verify_signature
func wgVerifySignature(alg unsafe.Pointer, algLen uint32, key unsafe.Pointer, keyLen uint32, data unsafe.Pointer, dataLen uint32, sig unsafe.Pointer, sigLen uint32) uint32

//go:wasmimport wasmgate config_error
func wgConfigError(msg unsafe.Pointer, msgLen uint32)

// wasmABI implements rawABI with the imported functions.
type wasmABI struct{}

func (wasmABI) log(l int32, p unsafe.Pointer, n uint32)     { hhLog(l, p, n) }
func (wasmABI) logEnabled(l int32) uint32                   { return hhLogEnabled(l) }
func (wasmABI) getConfig(b unsafe.Pointer, l uint32) uint32 { return hhGetConfig(b, l) }
func (wasmABI) enableFeatures(f uint32) uint32              { return hhEnableFeatures(f) }
func (wasmABI) getMethod(b unsafe.Pointer, l uint32) uint32 { return hhGetMethod(b, l) }
func (wasmABI) setMethod(p unsafe.Pointer, n uint32)        { hhSetMethod(p, n) }
func (wasmABI) getURI(b unsafe.Pointer, l uint32) uint32    { return hhGetURI(b, l) }
func (wasmABI) setURI(p unsafe.Pointer, n uint32)           { hhSetURI(p, n) }
func (wasmABI) getProtocolVersion(b unsafe.Pointer, l uint32) uint32 {
	return hhGetProtocolVersion(b, l)
}
func (wasmABI) getSourceAddr(b unsafe.Pointer, l uint32) uint32 { return hhGetSourceAddr(b, l) }
func (wasmABI) getHeaderNames(k uint32, b unsafe.Pointer, l uint32) uint64 {
	return hhGetHeaderNames(k, b, l)
}
func (wasmABI) getHeaderValues(k uint32, n unsafe.Pointer, nl uint32, b unsafe.Pointer, l uint32) uint64 {
	return hhGetHeaderValues(k, n, nl, b, l)
}
func (wasmABI) setHeaderValue(k uint32, n unsafe.Pointer, nl uint32, v unsafe.Pointer, vl uint32) {
	hhSetHeaderValue(k, n, nl, v, vl)
}
func (wasmABI) addHeaderValue(k uint32, n unsafe.Pointer, nl uint32, v unsafe.Pointer, vl uint32) {
	hhAddHeaderValue(k, n, nl, v, vl)
}
func (wasmABI) removeHeader(k uint32, n unsafe.Pointer, nl uint32) { hhRemoveHeader(k, n, nl) }
func (wasmABI) readBody(k uint32, b unsafe.Pointer, l uint32) uint64 {
	return hhReadBody(k, b, l)
}
func (wasmABI) writeBody(k uint32, b unsafe.Pointer, l uint32) { hhWriteBody(k, b, l) }
func (wasmABI) getStatusCode() uint32                          { return hhGetStatusCode() }
func (wasmABI) setStatusCode(c uint32)                         { hhSetStatusCode(c) }
func (wasmABI) getProperty(n unsafe.Pointer, nl uint32, b unsafe.Pointer, l uint32) uint64 {
	return wgGetProperty(n, nl, b, l)
}
func (wasmABI) getValue(k unsafe.Pointer, kl uint32, b unsafe.Pointer, l uint32) uint64 {
	return wgGetValue(k, kl, b, l)
}
func (wasmABI) setValue(k unsafe.Pointer, kl uint32, v unsafe.Pointer, vl uint32) {
	wgSetValue(k, kl, v, vl)
}
func (wasmABI) counterIncr(k unsafe.Pointer, kl uint32, d, w int64, out unsafe.Pointer) uint32 {
	return wgCounterIncr(k, kl, d, w, out)
}
func (wasmABI) kvGet(k unsafe.Pointer, kl uint32, b unsafe.Pointer, l uint32) uint64 {
	return wgKVGet(k, kl, b, l)
}
func (wasmABI) kvSet(k unsafe.Pointer, kl uint32, v unsafe.Pointer, vl uint32, ttl int64) uint32 {
	return wgKVSet(k, kl, v, vl, ttl)
}
func (wasmABI) kvDelete(k unsafe.Pointer, kl uint32) uint32 { return wgKVDelete(k, kl) }
func (wasmABI) metricDefine(kind uint32, n unsafe.Pointer, nl uint32, h unsafe.Pointer, hl uint32) int32 {
	return wgMetricDefine(kind, n, nl, h, hl)
}
func (wasmABI) metricRecord(id int32, v float64) { wgMetricRecord(id, v) }
func (wasmABI) declareStateless()                { wgDeclareStateless() }
func (wasmABI) declareRequestOnly()              { wgDeclareRequestOnly() }
func (wasmABI) verifySignature(a unsafe.Pointer, al uint32, k unsafe.Pointer, kl uint32, d unsafe.Pointer, dl uint32, s unsafe.Pointer, sl uint32) uint32 {
	return wgVerifySignature(a, al, k, kl, d, dl, s, sl)
}
func (wasmABI) configError(m unsafe.Pointer, ml uint32) { wgConfigError(m, ml) }

// wasmHost is the only host of a Wasm guest.
var wasmHost = newABIHost(wasmABI{})

func init() { hostabi.SetHost(wasmHost) }

func hst() hostabi.Host { return wasmHost }

// wasmHandleRequest is the http-wasm handle_request export: the low 32
// bits are 1 to continue; the request context (high bits) is unused
// because the SDK keeps per-request state host-side.
//
//go:wasmexport handle_request
func wasmHandleRequest() uint64 {
	if handleRequest(wasmHost) {
		return 1
	}
	return 0
}

// wasmHandleResponse is the http-wasm handle_response export.
//
//go:wasmexport handle_response
func wasmHandleResponse(reqCtx uint32, isError uint32) {
	handleResponse(isError != 0)
}
