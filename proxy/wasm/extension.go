package wasm

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/tetratelabs/wazero/api"
	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/abi"
)

// maxStoreValue bounds one key/value written by a guest.
const maxStoreValue = 1 << 20

func wasmgateFuncs() []hostFunc {
	return []hostFunc{
		{name: abi.FuncGetProperty, params: []api.ValueType{i32, i32, i32, i32}, results: []api.ValueType{i64}, reqOnly: true, fn: wGetProperty},
		{name: abi.FuncGetValue, params: []api.ValueType{i32, i32, i32, i32}, results: []api.ValueType{i64}, reqOnly: true, fn: wGetValue},
		{name: abi.FuncSetValue, params: []api.ValueType{i32, i32, i32, i32}, reqOnly: true, fn: wSetValue},
		{name: abi.FuncCounterIncr, params: []api.ValueType{i32, i32, i64, i64, i32}, results: []api.ValueType{i32}, fn: wCounterIncr},
		{name: abi.FuncKVGet, params: []api.ValueType{i32, i32, i32, i32}, results: []api.ValueType{i64}, fn: wKVGet},
		{name: abi.FuncKVSet, params: []api.ValueType{i32, i32, i32, i32, i64}, results: []api.ValueType{i32}, fn: wKVSet},
		{name: abi.FuncKVDelete, params: []api.ValueType{i32, i32}, results: []api.ValueType{i32}, fn: wKVDelete},
		{name: abi.FuncMetricDefine, params: []api.ValueType{i32, i32, i32, i32, i32}, results: []api.ValueType{i32}, fn: wMetricDefine},
		{name: abi.FuncMetricRecord, params: []api.ValueType{i32, f64}, fn: wMetricRecord},
		{name: abi.FuncDeclareStateless, fn: wDeclareStateless},
		{name: abi.FuncDeclareRequestOnly, fn: wDeclareRequestOnly},
		{name: abi.FuncVerifySignature, params: []api.ValueType{i32, i32, i32, i32, i32, i32, i32, i32}, results: []api.ValueType{i32}, fn: wVerifySignature},
		{name: abi.FuncConfigError, params: []api.ValueType{i32, i32}, fn: wConfigError},
	}
}

func found(flag uint32, n uint32) uint64 { return uint64(flag)<<32 | uint64(n) }

func wGetProperty(i *instance, s []uint64) {
	name, ok := i.read(uint32(s[0]), uint32(s[1]), "get_property name")
	buf, limit := uint32(s[2]), uint32(s[3])
	s[0] = 0
	if !ok {
		return
	}
	v, ok := i.x.Props.Get(string(name))
	if !ok {
		return
	}
	s[0] = found(abi.Found, i.writeString(buf, limit, v, "get_property"))
}

func wGetValue(i *instance, s []uint64) {
	key, ok := i.read(uint32(s[0]), uint32(s[1]), "get_value key")
	buf, limit := uint32(s[2]), uint32(s[3])
	s[0] = 0
	if !ok {
		return
	}
	v, ok := i.x.Values[string(key)]
	if !ok {
		return
	}
	s[0] = found(abi.Found, i.writeString(buf, limit, v, "get_value"))
}

func wSetValue(i *instance, s []uint64) {
	key, ok := i.read(uint32(s[0]), uint32(s[1]), "set_value key")
	if !ok {
		return
	}
	val, ok := i.read(uint32(s[2]), uint32(s[3]), "set_value value")
	if !ok {
		return
	}
	if len(key)+len(val) > maxStoreValue {
		i.violate("set_value: %d bytes is over the %d byte limit", len(key)+len(val), maxStoreValue)
		return
	}
	i.x.SetValue(string(key), string(val))
}

// storeKey namespaces a guest key by the filter's name, so plugins cannot
// read or reset each other's counters.
func (i *instance) storeKey(key []byte) string {
	return i.p.storePrefix + string(key)
}

func wCounterIncr(i *instance, s []uint64) {
	key, ok := i.read(uint32(s[0]), uint32(s[1]), "counter_incr key")
	delta, windowMS, out := int64(s[2]), int64(s[3]), uint32(s[4])
	s[0] = uint64(abi.StatusInvalid)
	if !ok {
		return
	}
	if _, ok := i.read(out, 16, "counter_incr out"); !ok {
		return
	}
	if windowMS <= 0 || len(key) == 0 || len(key) > maxStoreValue {
		return
	}
	if i.p.store == nil {
		s[0] = uint64(abi.StatusError)
		return
	}
	v, ttl, err := i.p.store.Incr(i.ctx, i.storeKey(key), delta, time.Duration(windowMS)*time.Millisecond)
	if err != nil {
		i.p.storeError("counter_incr", err)
		s[0] = uint64(abi.StatusError)
		return
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(v))
	binary.LittleEndian.PutUint64(b[8:], uint64(ttl.Milliseconds()))
	i.mem.Write(out, b[:])
	s[0] = uint64(abi.StatusOK)
}

func wKVGet(i *instance, s []uint64) {
	key, ok := i.read(uint32(s[0]), uint32(s[1]), "kv_get key")
	buf, limit := uint32(s[2]), uint32(s[3])
	s[0] = 0
	if !ok || len(key) == 0 {
		return
	}
	if i.p.store == nil {
		s[0] = found(abi.StoreError, 0)
		return
	}
	v, ok, err := i.p.store.Get(i.ctx, i.storeKey(key))
	switch {
	case err != nil:
		i.p.storeError("kv_get", err)
		s[0] = found(abi.StoreError, 0)
	case ok:
		s[0] = found(abi.Found, i.writeBytes(buf, limit, v, "kv_get"))
	}
}

func wKVSet(i *instance, s []uint64) {
	key, ok := i.read(uint32(s[0]), uint32(s[1]), "kv_set key")
	if !ok {
		s[0] = uint64(abi.StatusInvalid)
		return
	}
	val, ok := i.read(uint32(s[2]), uint32(s[3]), "kv_set value")
	ttlMS := int64(s[4])
	s[0] = uint64(abi.StatusInvalid)
	if !ok || len(key) == 0 || ttlMS < 0 || len(key)+len(val) > maxStoreValue {
		return
	}
	if i.p.store == nil {
		s[0] = uint64(abi.StatusError)
		return
	}
	// The store keeps the value: copy it out of guest memory.
	if err := i.p.store.Set(i.ctx, i.storeKey(key), append([]byte(nil), val...), time.Duration(ttlMS)*time.Millisecond); err != nil {
		i.p.storeError("kv_set", err)
		s[0] = uint64(abi.StatusError)
		return
	}
	s[0] = uint64(abi.StatusOK)
}

func wKVDelete(i *instance, s []uint64) {
	key, ok := i.read(uint32(s[0]), uint32(s[1]), "kv_delete key")
	s[0] = uint64(abi.StatusInvalid)
	if !ok || len(key) == 0 {
		return
	}
	if i.p.store == nil {
		s[0] = uint64(abi.StatusError)
		return
	}
	if err := i.p.store.Delete(i.ctx, i.storeKey(key)); err != nil {
		i.p.storeError("kv_delete", err)
		s[0] = uint64(abi.StatusError)
		return
	}
	s[0] = uint64(abi.StatusOK)
}

func wMetricDefine(i *instance, s []uint64) {
	kind := abi.MetricKind(uint32(s[0]))
	name, ok := i.read(uint32(s[1]), uint32(s[2]), "metric_define name")
	if !ok {
		s[0] = uint64(uint32(0xffffffff)) // -1
		return
	}
	help, ok := i.read(uint32(s[3]), uint32(s[4]), "metric_define help")
	if !ok {
		s[0] = uint64(uint32(0xffffffff))
		return
	}
	id, err := i.p.stats.define(i.p.h, kind, string(name), string(help))
	if err != nil {
		if ce := i.p.log.Check(zap.WarnLevel, "metric refused"); ce != nil {
			ce.Write(zap.Error(err))
		}
		id = -1
	}
	s[0] = uint64(uint32(id))
}

func wMetricRecord(i *instance, s []uint64) {
	id := int32(uint32(s[0]))
	v := math.Float64frombits(s[1])
	i.p.stats.record(id, v)
}

func wDeclareStateless(i *instance, _ []uint64) {
	if i.phase == phaseInit {
		i.stateless = true
	}
}

func wDeclareRequestOnly(i *instance, _ []uint64) {
	if i.phase == phaseInit {
		i.requestOnly = true
	}
}

func wVerifySignature(i *instance, s []uint64) {
	alg, ok1 := i.read(uint32(s[0]), uint32(s[1]), "verify_signature alg")
	key, ok2 := i.read(uint32(s[2]), uint32(s[3]), "verify_signature key")
	data, ok3 := i.read(uint32(s[4]), uint32(s[5]), "verify_signature data")
	sig, ok4 := i.read(uint32(s[6]), uint32(s[7]), "verify_signature sig")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		s[0] = uint64(abi.StatusError)
		return
	}
	s[0] = uint64(i.p.h.keys.Verify(string(alg), key, data, sig))
}

func wConfigError(i *instance, s []uint64) {
	msg, ok := i.read(uint32(s[0]), uint32(s[1]), "config_error")
	if !ok {
		return
	}
	m := clipString(string(msg), 2048)
	if m == "" {
		m = "refused without a message"
	}
	if i.phase == phaseInit {
		if i.configErr == "" {
			i.configErr = m
		}
		return
	}
	if ce := i.p.log.Check(zap.WarnLevel, "config_error outside initialisation ignored"); ce != nil {
		ce.Write(zap.String("msg", m))
	}
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
