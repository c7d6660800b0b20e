package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/wasmgate/wasmgate/abi"
)

// Value types in signatures below.
const (
	i32 = 0x7f
	i64 = 0x7e
	f64 = 0x7c
)

type sig struct{ params, results []byte }

func (s sig) String() string {
	name := map[byte]string{i32: "i32", i64: "i64", 0x7d: "f32", f64: "f64"}
	f := func(ts []byte) string {
		var out []string
		for _, t := range ts {
			out = append(out, name[t])
		}
		return "(" + strings.Join(out, ",") + ")"
	}
	return f(s.params) + "->" + f(s.results)
}

func n32(n int) []byte { return bytes.Repeat([]byte{i32}, n) }

// wantImports are the host functions of both modules with the signatures
// of the http-wasm handler ABI and of abi.
var wantImports = map[string]sig{
	abi.ModuleHTTPHandler + "." + abi.FuncLog:                {n32(3), nil},
	abi.ModuleHTTPHandler + "." + abi.FuncLogEnabled:         {n32(1), n32(1)},
	abi.ModuleHTTPHandler + "." + abi.FuncGetConfig:          {n32(2), n32(1)},
	abi.ModuleHTTPHandler + "." + abi.FuncEnableFeatures:     {n32(1), n32(1)},
	abi.ModuleHTTPHandler + "." + abi.FuncGetMethod:          {n32(2), n32(1)},
	abi.ModuleHTTPHandler + "." + abi.FuncSetMethod:          {n32(2), nil},
	abi.ModuleHTTPHandler + "." + abi.FuncGetURI:             {n32(2), n32(1)},
	abi.ModuleHTTPHandler + "." + abi.FuncSetURI:             {n32(2), nil},
	abi.ModuleHTTPHandler + "." + abi.FuncGetProtocolVersion: {n32(2), n32(1)},
	abi.ModuleHTTPHandler + "." + abi.FuncGetHeaderNames:     {n32(3), []byte{i64}},
	abi.ModuleHTTPHandler + "." + abi.FuncGetHeaderValues:    {n32(5), []byte{i64}},
	abi.ModuleHTTPHandler + "." + abi.FuncSetHeaderValue:     {n32(5), nil},
	abi.ModuleHTTPHandler + "." + abi.FuncAddHeaderValue:     {n32(5), nil},
	abi.ModuleHTTPHandler + "." + abi.FuncRemoveHeader:       {n32(3), nil},
	abi.ModuleHTTPHandler + "." + abi.FuncReadBody:           {n32(3), []byte{i64}},
	abi.ModuleHTTPHandler + "." + abi.FuncWriteBody:          {n32(3), nil},
	abi.ModuleHTTPHandler + "." + abi.FuncGetStatusCode:      {nil, n32(1)},
	abi.ModuleHTTPHandler + "." + abi.FuncSetStatusCode:      {n32(1), nil},
	abi.ModuleHTTPHandler + "." + abi.FuncGetSourceAddr:      {n32(2), n32(1)},
	abi.ModuleWasmgate + "." + abi.FuncGetProperty:           {n32(4), []byte{i64}},
	abi.ModuleWasmgate + "." + abi.FuncGetValue:              {n32(4), []byte{i64}},
	abi.ModuleWasmgate + "." + abi.FuncSetValue:              {n32(4), nil},
	abi.ModuleWasmgate + "." + abi.FuncCounterIncr:           {[]byte{i32, i32, i64, i64, i32}, n32(1)},
	abi.ModuleWasmgate + "." + abi.FuncKVGet:                 {n32(4), []byte{i64}},
	abi.ModuleWasmgate + "." + abi.FuncKVSet:                 {[]byte{i32, i32, i32, i32, i64}, n32(1)},
	abi.ModuleWasmgate + "." + abi.FuncKVDelete:              {n32(2), n32(1)},
	abi.ModuleWasmgate + "." + abi.FuncMetricDefine:          {n32(5), n32(1)},
	abi.ModuleWasmgate + "." + abi.FuncMetricRecord:          {[]byte{i32, f64}, nil},
	abi.ModuleWasmgate + "." + abi.FuncDeclareStateless:      {nil, nil},
	abi.ModuleWasmgate + "." + abi.FuncDeclareRequestOnly:    {nil, nil},
	abi.ModuleWasmgate + "." + abi.FuncVerifySignature:       {n32(8), n32(1)},
	abi.ModuleWasmgate + "." + abi.FuncConfigError:           {n32(2), nil},
}

// wantExports are the guest exports a Go reactor must have.
var wantExports = map[string]sig{
	abi.ExportHandleRequest:  {nil, []byte{i64}},
	abi.ExportHandleResponse: {n32(2), nil},
	abi.ExportInitialize:     {nil, nil},
}

// goTool finds the go command that built this test.
func goTool(t *testing.T) string {
	t.Helper()
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: the go command is not available to build Wasm guests")
	}
	return p
}

// TestExamplesBuildForWasm builds every plugin in pluginsdk-examples/ and
// the all-API test guest with GOOS=wasip1 -buildmode=c-shared, and checks
// each module's exports and host imports against the ABI.
func TestExamplesBuildForWasm(t *testing.T) {
	goBin := goTool(t)
	dirs, err := filepath.Glob("../pluginsdk-examples/*/main.go")
	if err != nil || len(dirs) < 5 {
		t.Fatalf("found %d examples (%v), want at least 5", len(dirs), err)
	}
	pkgs := []string{"./testdata/allapi"}
	for _, d := range dirs {
		pkgs = append(pkgs, "./"+filepath.ToSlash(filepath.Dir(d)))
	}
	out := t.TempDir()
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 2)
		mu   sync.Mutex
		mods = map[string][]byte{}
	)
	for _, pkg := range pkgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			file := filepath.Join(out, filepath.Base(pkg)+".wasm")
			cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-o", file, pkg)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("build %s: %v\n%s", pkg, err, b)
				return
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			mods[pkg] = b
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, pkg := range pkgs {
		b, ok := mods[pkg]
		if !ok {
			continue
		}
		t.Run(filepath.Base(pkg), func(t *testing.T) {
			t.Logf("%s: %d bytes", pkg, len(b))
			m, err := parseModule(b)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			for name, want := range wantExports {
				if got, ok := m.exports[name]; !ok || got.String() != want.String() {
					t.Errorf("export %s = %v (present %v), want %v", name, got, ok, want)
				}
			}
			for name, got := range m.imports {
				if strings.HasPrefix(name, "wasi_snapshot_preview1.") {
					continue
				}
				want, ok := wantImports[name]
				if !ok {
					t.Errorf("unknown host import %s", name)
					continue
				}
				if got.String() != want.String() {
					t.Errorf("import %s: %v, want %v", name, got, want)
				}
			}
			if filepath.Base(pkg) == "allapi" {
				for name := range wantImports {
					if _, ok := m.imports[name]; !ok {
						t.Errorf("allapi does not import %s: the SDK never calls it", name)
					}
				}
			}
		})
	}
}

// module is what the test needs from a Wasm binary.
type module struct {
	imports map[string]sig // "module.name" -> signature (functions only)
	exports map[string]sig // functions only
}

// parseModule reads the type, import, function and export sections.
func parseModule(b []byte) (*module, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return nil, errors.New("not a wasm module")
	}
	r := &reader{b: b, i: 8}
	var types []sig
	var funcTypes []uint32 // function index space: imports first
	m := &module{imports: map[string]sig{}, exports: map[string]sig{}}
	for r.i < len(b) && r.err == nil {
		id := r.byte()
		size := int(r.u32())
		end := r.i + size
		switch id {
		case 1:
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				if r.byte() != 0x60 {
					return nil, errors.New("bad func type")
				}
				types = append(types, sig{params: r.vec(), results: r.vec()})
			}
		case 2:
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				name := r.name() + "." + r.name()
				switch r.byte() {
				case 0:
					ti := r.u32()
					funcTypes = append(funcTypes, ti)
					if int(ti) < len(types) {
						m.imports[name] = types[ti]
					}
				case 1:
					r.byte()
					r.limits()
				case 2:
					r.limits()
				case 3:
					r.byte()
					r.byte()
				}
			}
		case 3:
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				funcTypes = append(funcTypes, r.u32())
			}
		case 7:
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				name := r.name()
				kind := r.byte()
				idx := r.u32()
				if kind == 0 && int(idx) < len(funcTypes) && int(funcTypes[idx]) < len(types) {
					m.exports[name] = types[funcTypes[idx]]
				}
			}
		}
		r.i = end
	}
	return m, r.err
}

type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.err = fmt.Errorf("unexpected end at %d", r.i)
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	return v
}

func (r *reader) vec() []byte {
	n := int(r.u32())
	out := make([]byte, 0, n)
	for range n {
		out = append(out, r.byte())
	}
	return out
}

func (r *reader) name() string { return string(r.vec()) }

func (r *reader) limits() {
	if flags := r.byte(); flags&1 != 0 {
		r.u32()
		r.u32()
	} else {
		r.u32()
	}
}
