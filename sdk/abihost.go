package sdk

import (
	"encoding/binary"
	"strings"
	"unsafe"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/sdk/internal/hostabi"
)

// rawABI is the host ABI at the level of guest pointers, one method per
// imported function. The wasip1 build implements it with //go:wasmimport
// functions; tests implement it in Go to check the encodings.
type rawABI interface {
	log(level int32, msg unsafe.Pointer, msgLen uint32)
	logEnabled(level int32) uint32
	getConfig(buf unsafe.Pointer, limit uint32) uint32
	enableFeatures(features uint32) uint32
	getMethod(buf unsafe.Pointer, limit uint32) uint32
	setMethod(p unsafe.Pointer, n uint32)
	getURI(buf unsafe.Pointer, limit uint32) uint32
	setURI(p unsafe.Pointer, n uint32)
	getProtocolVersion(buf unsafe.Pointer, limit uint32) uint32
	getSourceAddr(buf unsafe.Pointer, limit uint32) uint32
	getHeaderNames(kind uint32, buf unsafe.Pointer, limit uint32) uint64
	getHeaderValues(kind uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64
	setHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)
	addHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)
	removeHeader(kind uint32, name unsafe.Pointer, nameLen uint32)
	readBody(kind uint32, buf unsafe.Pointer, limit uint32) uint64
	writeBody(kind uint32, body unsafe.Pointer, bodyLen uint32)
	getStatusCode() uint32
	setStatusCode(code uint32)

	getProperty(name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64
	getValue(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, limit uint32) uint64
	setValue(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32)
	counterIncr(key unsafe.Pointer, keyLen uint32, delta, windowMillis int64, out unsafe.Pointer) uint32
	kvGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, limit uint32) uint64
	kvSet(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32, ttlMillis int64) uint32
	kvDelete(key unsafe.Pointer, keyLen uint32) uint32
	metricDefine(kind uint32, name unsafe.Pointer, nameLen uint32, help unsafe.Pointer, helpLen uint32) int32
	metricRecord(id int32, value float64)
	declareStateless()
	declareRequestOnly()
	verifySignature(alg unsafe.Pointer, algLen uint32, key unsafe.Pointer, keyLen uint32, data unsafe.Pointer, dataLen uint32, sig unsafe.Pointer, sigLen uint32) uint32
	configError(msg unsafe.Pointer, msgLen uint32)
}

// abiHost implements hostabi.Host on top of the raw ABI: it owns a scratch
// buffer for the buffer convention (the host returns the needed length and
// writes nothing when it does not fit; we grow and ask again).
type abiHost struct {
	raw rawABI
	buf []byte
}

var _ hostabi.Host = (*abiHost)(nil)

// maxBodyChunk bounds one read_body call.
const maxBodyChunk = 64 << 10

func newABIHost(raw rawABI) *abiHost { return &abiHost{raw: raw, buf: make([]byte, 2048)} }

func sptr(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func bptr(b []byte) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

func (a *abiHost) ensure(n uint32) {
	if int(n) > len(a.buf) {
		a.buf = make([]byte, int(n))
	}
}

// fill32 runs a (buf, limit) -> len call with the buffer convention.
func (a *abiHost) fill32(call func(buf unsafe.Pointer, limit uint32) uint32) []byte {
	for range 3 {
		p, limit := bptr(a.buf)
		n := call(p, limit)
		if n <= limit {
			return a.buf[:n]
		}
		a.ensure(n)
	}
	return nil
}

// fill64 runs a (buf, limit) -> hi<<32|len call with the buffer convention.
// It returns the high word and the bytes (nil when hi says nothing was
// written because the value is missing).
func (a *abiHost) fill64(call func(buf unsafe.Pointer, limit uint32) uint64, retryIf func(hi uint32) bool) (uint32, []byte) {
	for range 3 {
		p, limit := bptr(a.buf)
		r := call(p, limit)
		hi, n := uint32(r>>32), uint32(r)
		if n <= limit || !retryIf(hi) {
			if n > limit {
				n = 0
			}
			return hi, a.buf[:n]
		}
		a.ensure(n)
	}
	return 0, nil
}

func always(uint32) bool { return true }

func isFound(hi uint32) bool { return hi == abi.Found }

// splitNUL splits NUL-terminated strings.
func splitNUL(b []byte, count uint32) []string {
	if count == 0 || len(b) == 0 {
		return nil
	}
	out := make([]string, 0, count)
	s := string(b)
	for s != "" {
		v, rest, _ := strings.Cut(s, "\x00")
		out = append(out, v)
		s = rest
	}
	return out
}

func (a *abiHost) Log(level int32, msg string) {
	p, n := sptr(msg)
	a.raw.log(level, p, n)
}

func (a *abiHost) LogEnabled(level int32) bool { return a.raw.logEnabled(level) != 0 }

func (a *abiHost) Config() []byte {
	return append([]byte(nil), a.fill32(a.raw.getConfig)...)
}

func (a *abiHost) EnableFeatures(f uint32) uint32 { return a.raw.enableFeatures(f) }

func (a *abiHost) Method() string { return string(a.fill32(a.raw.getMethod)) }

func (a *abiHost) SetMethod(m string) {
	p, n := sptr(m)
	a.raw.setMethod(p, n)
}

func (a *abiHost) URI() string { return string(a.fill32(a.raw.getURI)) }

func (a *abiHost) SetURI(u string) {
	p, n := sptr(u)
	a.raw.setURI(p, n)
}

func (a *abiHost) ProtocolVersion() string { return string(a.fill32(a.raw.getProtocolVersion)) }

func (a *abiHost) SourceAddr() string { return string(a.fill32(a.raw.getSourceAddr)) }

func (a *abiHost) HeaderNames(kind uint32) []string {
	count, b := a.fill64(func(buf unsafe.Pointer, limit uint32) uint64 {
		return a.raw.getHeaderNames(kind, buf, limit)
	}, always)
	return splitNUL(b, count)
}

func (a *abiHost) HeaderValues(kind uint32, name string) []string {
	np, nn := sptr(name)
	count, b := a.fill64(func(buf unsafe.Pointer, limit uint32) uint64 {
		return a.raw.getHeaderValues(kind, np, nn, buf, limit)
	}, always)
	return splitNUL(b, count)
}

func (a *abiHost) SetHeader(kind uint32, name, value string) {
	np, nn := sptr(name)
	vp, vn := sptr(value)
	a.raw.setHeaderValue(kind, np, nn, vp, vn)
}

func (a *abiHost) AddHeader(kind uint32, name, value string) {
	np, nn := sptr(name)
	vp, vn := sptr(value)
	a.raw.addHeaderValue(kind, np, nn, vp, vn)
}

func (a *abiHost) RemoveHeader(kind uint32, name string) {
	np, nn := sptr(name)
	a.raw.removeHeader(kind, np, nn)
}

func (a *abiHost) ReadBody(kind uint32) []byte {
	var out []byte
	chunk := make([]byte, 4096)
	for {
		p, limit := bptr(chunk)
		r := a.raw.readBody(kind, p, limit)
		eof, n := uint32(r>>32), min(uint32(r), limit)
		out = append(out, chunk[:n]...)
		if eof != 0 || n == 0 {
			return out
		}
		if n == limit && len(chunk) < maxBodyChunk {
			chunk = make([]byte, 2*len(chunk))
		}
	}
}

func (a *abiHost) WriteBody(kind uint32, body []byte) {
	p, n := bptr(body)
	a.raw.writeBody(kind, p, n)
}

func (a *abiHost) StatusCode() uint32 { return a.raw.getStatusCode() }

func (a *abiHost) SetStatusCode(code uint32) { a.raw.setStatusCode(code) }

func (a *abiHost) lookup(key string, call func(k unsafe.Pointer, kl uint32, buf unsafe.Pointer, limit uint32) uint64) (uint32, []byte) {
	kp, kn := sptr(key)
	return a.fill64(func(buf unsafe.Pointer, limit uint32) uint64 {
		return call(kp, kn, buf, limit)
	}, isFound)
}

func (a *abiHost) Property(name string) (string, bool) {
	f, b := a.lookup(name, a.raw.getProperty)
	return string(b), f == abi.Found
}

func (a *abiHost) Value(key string) (string, bool) {
	f, b := a.lookup(key, a.raw.getValue)
	return string(b), f == abi.Found
}

func (a *abiHost) SetValue(key, value string) {
	kp, kn := sptr(key)
	vp, vn := sptr(value)
	a.raw.setValue(kp, kn, vp, vn)
}

func (a *abiHost) CounterIncr(key string, delta, windowMillis int64) (int64, int64, uint32) {
	var out [16]byte
	kp, kn := sptr(key)
	st := a.raw.counterIncr(kp, kn, delta, windowMillis, unsafe.Pointer(&out[0]))
	return int64(binary.LittleEndian.Uint64(out[:8])), int64(binary.LittleEndian.Uint64(out[8:])), st
}

func (a *abiHost) KVGet(key string) ([]byte, uint32) {
	f, b := a.lookup(key, a.raw.kvGet)
	if f != abi.Found {
		return nil, f
	}
	return append([]byte(nil), b...), f
}

func (a *abiHost) KVSet(key string, value []byte, ttlMillis int64) uint32 {
	kp, kn := sptr(key)
	vp, vn := bptr(value)
	return a.raw.kvSet(kp, kn, vp, vn, ttlMillis)
}

func (a *abiHost) KVDelete(key string) uint32 {
	kp, kn := sptr(key)
	return a.raw.kvDelete(kp, kn)
}

func (a *abiHost) MetricDefine(kind uint32, name, help string) int32 {
	np, nn := sptr(name)
	hp, hn := sptr(help)
	return a.raw.metricDefine(kind, np, nn, hp, hn)
}

func (a *abiHost) MetricRecord(id int32, value float64) { a.raw.metricRecord(id, value) }

func (a *abiHost) DeclareStateless() { a.raw.declareStateless() }

func (a *abiHost) DeclareRequestOnly() { a.raw.declareRequestOnly() }

func (a *abiHost) VerifySignature(alg string, key, data, sig []byte) uint32 {
	ap, an := sptr(alg)
	kp, kn := bptr(key)
	dp, dn := bptr(data)
	sp, sn := bptr(sig)
	return a.raw.verifySignature(ap, an, kp, kn, dp, dn, sp, sn)
}

func (a *abiHost) ConfigError(msg string) {
	p, n := sptr(msg)
	a.raw.configError(p, n)
}
