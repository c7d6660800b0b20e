package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmgate/wasmgate/abi"
)

// compiled is a compiled module shared by every plugin with the same bytes
// and memory limit; it is closed when the last of them closes.
type compiled struct {
	key         moduleKey
	mod         wazero.CompiledModule
	refs        int
	start       string // _initialize, _start or ""
	checkConfig bool
	abi         string
}

// readPlugin reads a plugin file and checks its pinned hash.
func readPlugin(path, pinned string) ([]byte, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("wasm: read plugin: %w", err)
	}
	sum := sha256.Sum256(b)
	sha := hex.EncodeToString(sum[:])
	if pinned != "" && !strings.EqualFold(pinned, sha) {
		return nil, "", fmt.Errorf("wasm: plugin %s has sha256 %s, config pins %s", path, sha, strings.ToLower(pinned))
	}
	return b, sha, nil
}

// compile returns the compiled module for bin, compiling it only when no
// plugin holds it already. The caller must release it.
func (h *Host) compile(ctx context.Context, rt *runtimeEntry, bin []byte, sha string) (*compiled, error) {
	key := moduleKey{pages: rt.pages, sha: sha}
	h.mu.Lock()
	if c, ok := h.modules[key]; ok {
		c.refs++
		h.mu.Unlock()
		return c, nil
	}
	h.mu.Unlock()

	mod, err := rt.rt.CompileModule(ctx, bin)
	if err != nil {
		return nil, fmt.Errorf("wasm: compile: %w", err)
	}
	c := &compiled{key: key, mod: mod, refs: 1}
	if err := c.check(); err != nil {
		_ = mod.Close(ctx)
		return nil, err
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		_ = mod.Close(ctx)
		return nil, ErrClosed
	}
	if other, ok := h.modules[key]; ok { // compiled concurrently
		other.refs++
		_ = mod.Close(ctx)
		return other, nil
	}
	h.modules[key] = c
	return c, nil
}

// release drops one reference to c and closes it with the last one.
func (h *Host) release(ctx context.Context, c *compiled) {
	h.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last && h.modules[c.key] == c {
		delete(h.modules, c.key)
	}
	h.mu.Unlock()
	if last {
		_ = c.mod.Close(ctx)
	}
}

type sig struct {
	params, results []api.ValueType
}

func (s sig) String() string {
	f := func(ts []api.ValueType) string {
		names := make([]string, len(ts))
		for i, t := range ts {
			names[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(names, ", ") + ")"
	}
	return f(s.params) + " -> " + f(s.results)
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// check verifies the guest's exports and imports against the ABI.
func (c *compiled) check() error {
	exports := c.mod.ExportedFunctions()
	want := []struct {
		name     string
		sig      sig
		optional bool
	}{
		{abi.ExportHandleRequest, sig{nil, []api.ValueType{i64}}, false},
		{abi.ExportHandleResponse, sig{[]api.ValueType{i32, i32}, nil}, false},
		{abi.ExportInitialize, sig{nil, nil}, true},
		{abi.ExportStart, sig{nil, nil}, true},
		{abi.ExportCheckConfig, sig{nil, []api.ValueType{i32}}, true},
	}
	for _, w := range want {
		def, ok := exports[w.name]
		if !ok {
			if w.optional {
				continue
			}
			return fmt.Errorf("wasm: guest does not export %q %s (http-wasm handler ABI)", w.name, w.sig)
		}
		got := sig{def.ParamTypes(), def.ResultTypes()}
		if !sameTypes(got.params, w.sig.params) || !sameTypes(got.results, w.sig.results) {
			return fmt.Errorf("wasm: guest export %q has signature %s, want %s", w.name, got, w.sig)
		}
	}
	if _, ok := c.mod.ExportedMemories()[abi.ExportMemory]; !ok {
		return fmt.Errorf("wasm: guest does not export memory %q", abi.ExportMemory)
	}
	switch {
	case exports[abi.ExportInitialize] != nil:
		c.start = abi.ExportInitialize
	case exports[abi.ExportStart] != nil:
		c.start = abi.ExportStart
	}
	_, c.checkConfig = exports[abi.ExportCheckConfig]

	known := map[string]map[string]sig{
		abi.ModuleHTTPHandler: sigs(httpHandlerFuncs()),
		abi.ModuleWasmgate:    sigs(wasmgateFuncs()),
	}
	modules := map[string]bool{}
	for _, imp := range c.mod.ImportedFunctions() {
		modName, name, _ := imp.Import()
		modules[modName] = true
		if modName == wasiModule {
			continue
		}
		fns, ok := known[modName]
		if !ok {
			return fmt.Errorf("wasm: guest imports %s.%s from unknown module %q", modName, name, modName)
		}
		want, ok := fns[name]
		if !ok {
			return fmt.Errorf("wasm: guest imports unknown function %s.%s", modName, name)
		}
		got := sig{imp.ParamTypes(), imp.ResultTypes()}
		if !sameTypes(got.params, want.params) || !sameTypes(got.results, want.results) {
			return fmt.Errorf("wasm: guest imports %s.%s as %s, the host defines %s", modName, name, got, want)
		}
	}
	names := []string{"http-wasm"}
	if modules[abi.ModuleWasmgate] {
		names = append(names, "wasmgate")
	}
	if modules[wasiModule] {
		names = append(names, "wasi")
	}
	sort.Strings(names[1:])
	c.abi = strings.Join(names, "+")
	return nil
}

const wasiModule = "wasi_snapshot_preview1"

func sigs(fs []hostFunc) map[string]sig {
	m := make(map[string]sig, len(fs))
	for _, f := range fs {
		m[f.name] = sig{f.params, f.results}
	}
	return m
}
