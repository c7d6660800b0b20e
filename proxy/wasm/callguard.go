package wasm

import (
	"context"
	"reflect"
	"unsafe"

	"github.com/tetratelabs/wazero/api"
)

// Why this file exists.
//
// The sandbox needs a deadline per guest call, so the runtime is built
// with WithCloseOnContextDone(true): wazero then compiles a check of the
// module's "closed" flag into every function entry and loop header, and
// the guest stops at the next check once the flag is set. Setting the flag
// is the easy part. The cost is how wazero v1.12 sets it: every call starts
// a goroutine that waits for ctx.Done() — even when ctx never ends — and
// stops it when the call returns. On this project's 2-core benchmark box
// that goroutine (spawn, channel, two schedules, GC of its stack) is about
// 4 µs of CPU per guest call, two thirds of a header-only plugin's cost
// (BenchmarkWasmFilter: +6 µs with it, +2 µs without).
//
// The compiled checks do not need that goroutine; they need somebody to set
// the flag when the deadline passes. Every instance already has one reused
// timer (callCtx), so the timer sets the flag and the per-call goroutine
// goes away:
//
//   - turnOffCallWatcher clears the per-compiled-module switch that makes
//     wazero start the goroutine. The switch is unexported, so this uses
//     reflection on wazero's internals, by field name. It is done once per
//     compiled module, under Host.guardMu, before any instance of it runs a
//     call, so no guest call ever reads the switch while it changes.
//   - interrupt sets the flag when the timer fires, through wazero's own
//     exported CloseModuleOnCanceledOrTimeout on the module instance with an
//     already-ended context: the same path wazero's goroutine takes, which
//     closes the module without freeing anything the running guest uses.
//     This costs one goroutine per timeout, not per call.
//
// If a wazero upgrade renames what this relies on, both helpers report
// false, the switch stays on and calls keep wazero's per-call goroutine:
// slower, never unsafe. TestCallGuardFastPath fails in that case so the
// upgrade is noticed; the hostile-guest tests prove deadlines still cut
// loops either way.

// interrupter is the exported method of wazero's module instance that
// closes it asynchronously when ctx has ended.
type interrupter interface {
	CloseModuleOnCanceledOrTimeout(ctx context.Context) context.CancelFunc
}

// canInterrupt reports whether mod can be stopped by interrupt.
func canInterrupt(mod api.Module) bool {
	_, ok := mod.(interrupter)
	return ok
}

// interrupt stops the guest running in mod at its next check. ctx must have
// ended: its error picks the exit code (deadline exceeded or canceled).
func interrupt(ctx context.Context, mod api.Module) {
	if m, ok := mod.(interrupter); ok {
		m.CloseModuleOnCanceledOrTimeout(ctx)
	}
}

// callWatcherSwitch returns wazero's per-compiled-module switch that starts
// a watcher goroutine for each call, or nil when the layout is not the one
// this was written for. Path: *wasm.ModuleInstance .Engine (interface) ->
// *wazevo.moduleEngine .parent -> *wazevo.compiledModule .ensureTermination.
func callWatcherSwitch(mod api.Module) *bool {
	v := reflect.ValueOf(mod)
	for _, step := range []string{"Engine", "parent", "ensureTermination"} {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return nil
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return nil
		}
		v = v.FieldByName(step)
		if !v.IsValid() {
			return nil
		}
	}
	if v.Kind() != reflect.Bool || !v.CanAddr() {
		return nil
	}
	return (*bool)(unsafe.Pointer(v.UnsafeAddr()))
}

// turnOffCallWatcher clears the watcher switch of mod's compiled module when
// the timer can stop the guest instead. It reports whether calls on mod run
// without the per-call goroutine. The caller holds Host.guardMu and has not
// yet made any call on mod.
func turnOffCallWatcher(mod api.Module) bool {
	if !canInterrupt(mod) {
		return false
	}
	sw := callWatcherSwitch(mod)
	if sw == nil {
		return false
	}
	if *sw {
		*sw = false
	}
	return true
}

// noteSlowCalls logs, once per host, that guest calls keep wazero's
// per-call watcher goroutine.
func (h *Host) noteSlowCalls() {
	if h.slowCalls.CompareAndSwap(false, true) {
		h.log.Warn("wasm: this wazero build does not expose the call watcher switch; guest calls keep a watcher goroutine each (slower, still bounded by call_timeout)")
	}
}

// fastCalls reports whether every instance so far runs without wazero's
// per-call watcher goroutine.
func (h *Host) fastCalls() bool { return !h.slowCalls.Load() }
