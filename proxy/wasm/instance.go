package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

// phase tells host functions what the guest is doing.
type phase uint8

const (
	phaseInit phase = iota
	phaseRequest
	phaseResponse
)

func (ph phase) String() string {
	switch ph {
	case phaseRequest:
		return "handle_request"
	case phaseResponse:
		return "handle_response"
	}
	return "init"
}

// reqState is the host-side state of one request for one plugin.
type reqState struct {
	features abi.Features
	reqCtx   uint32
	reqRead  int // read_body offsets
	respRead int
	// write_body output of the current call, flushed when the call ends.
	reqOut, respOut         []byte
	reqWritten, respWritten bool
}

// errViolation marks a guest that broke the ABI (bad pointer, bad value,
// over a limit) without trapping. The request fails, the instance is kept:
// the host never unwound the guest's stack, so its state is intact.
var errViolation = errors.New("ABI violation")

// ConfigError is returned by Build when the guest refused its config.
type ConfigError struct {
	Plugin string
	Msg    string
}

// Error returns the guest's message with the plugin name.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("wasm: plugin %q refused its config: %s", e.Plugin, e.Msg)
}

// instance is one instantiated guest. It is used by one goroutine at a
// time: the pool hands it out and takes it back.
type instance struct {
	p          *plugin
	mod        api.Module
	mem        api.Memory
	handleReq  api.Function
	handleResp api.Function
	stack      [2]uint64

	cctx *callCtx

	// Valid during a guest call.
	ctx       context.Context
	x         *filter.Exchange
	st        *reqState
	phase     phase
	violation error
	hdrBytes  int

	scratch reqState

	// Declared by the guest while it initialised.
	stateless   bool
	requestOnly bool
	features    abi.Features
	configErr   string

	stdout, stderr *guestWriter
}

// newInstance instantiates the plugin's module and runs its start function
// and config check.
func (p *plugin) newInstance(ctx context.Context) (*instance, error) {
	i := &instance{p: p}
	i.cctx = newCallCtx(func(ctx context.Context) { interrupt(ctx, i.mod) })
	i.cctx.inst = i
	i.stdout = newGuestWriter(p.log, zapcore.InfoLevel, "stdout")
	i.stderr = newGuestWriter(p.log, zapcore.WarnLevel, "stderr")
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithStdout(i.stdout).
		WithStderr(i.stderr).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime()
	mod, err := p.rt.rt.InstantiateModule(ctx, p.comp.mod, cfg)
	if err != nil {
		i.cctx.stop()
		return nil, fmt.Errorf("wasm: instantiate %q: %w", p.name, err)
	}
	i.mod = mod
	i.mem = mod.Memory()
	if i.mem == nil {
		_ = mod.Close(ctx)
		i.cctx.stop()
		return nil, fmt.Errorf("wasm: instantiate %q: guest exports no memory", p.name)
	}
	p.h.guardMu.Lock()
	fast := turnOffCallWatcher(mod)
	p.h.guardMu.Unlock()
	if !fast {
		p.h.noteSlowCalls()
	}
	i.handleReq = mod.ExportedFunction(abi.ExportHandleRequest)
	i.handleResp = mod.ExportedFunction(abi.ExportHandleResponse)
	p.h.insts.Store(mod, i)

	if err := i.initialize(ctx); err != nil {
		i.close()
		return nil, err
	}
	return i, nil
}

// initialize runs _initialize or _start, then the optional check_config
// export, and reports a refused config as *ConfigError.
func (i *instance) initialize(ctx context.Context) error {
	p := i.p
	run := func(name string) (uint64, error) {
		fn := i.mod.ExportedFunction(name)
		if fn == nil {
			return 0, nil
		}
		i.phase = phaseInit
		i.violation = nil
		// The instance's timer bounds init as it bounds calls; the caller's
		// context can end it early (shutdown, a reload given up).
		i.cctx.arm(p.initTimeout)
		stop := context.AfterFunc(ctx, i.cctx.cancel)
		i.ctx = i.cctx
		res, err := fn.Call(i.cctx)
		stop()
		i.cctx.disarm()
		i.ctx = nil
		if err != nil {
			var exit *sys.ExitError
			if errors.As(err, &exit) && exit.ExitCode() == 0 {
				return 0, fmt.Errorf("wasm: plugin %q: %s exited; a plugin must stay alive (build Go guests with -buildmode=c-shared)", p.name, name)
			}
			return 0, fmt.Errorf("wasm: plugin %q: %s: %w%s", p.name, name, err, i.stderr.tailNote())
		}
		if i.mod.IsClosed() {
			return 0, fmt.Errorf("wasm: plugin %q: %s closed the module", p.name, name)
		}
		if i.violation != nil {
			return 0, fmt.Errorf("wasm: plugin %q: %s: %w", p.name, name, i.violation)
		}
		if len(res) > 0 {
			return res[0], nil
		}
		return 0, nil
	}
	if _, err := run(p.comp.start); err != nil {
		return err
	}
	if i.configErr == "" && p.comp.checkConfig {
		rc, err := run(abi.ExportCheckConfig)
		if err != nil {
			return err
		}
		if uint32(rc) != 0 && i.configErr == "" {
			i.configErr = fmt.Sprintf("%s returned %d", abi.ExportCheckConfig, uint32(rc))
		}
	}
	if i.configErr != "" {
		return &ConfigError{Plugin: p.name, Msg: i.configErr}
	}
	return nil
}

// call runs one guest export within the plugin's call timeout. Bodies
// written with write_body are flushed to the exchange when it returns.
func (i *instance) call(fn api.Function, x *filter.Exchange, st *reqState, ph phase) error {
	if x.Response == nil {
		x.Response = &filter.Response{StatusCode: http.StatusOK, Header: make(http.Header)}
	}
	if x.Response.Header == nil {
		x.Response.Header = make(http.Header)
	}
	if x.Request.Header == nil {
		x.Request.Header = make(http.Header)
	}
	i.x, i.st, i.phase = x, st, ph
	i.violation, i.hdrBytes = nil, 0
	st.reqWritten, st.respWritten = false, false
	i.cctx.arm(i.p.timeout)
	i.ctx = i.cctx
	err := fn.CallWithStack(i.cctx, i.stack[:])
	i.cctx.disarm()
	if err == nil && i.mod.IsClosed() {
		// The deadline fired as the guest returned and closed the module:
		// the call ran over its time; fail it here rather than the next one.
		err = sys.NewExitError(sys.ExitCodeDeadlineExceeded)
	}
	if err == nil && i.violation == nil {
		if st.reqWritten {
			x.SetRequestBody(st.reqOut)
		}
		if st.respWritten {
			x.Response.SetBody(st.respOut)
		}
	}
	st.reqOut, st.respOut = nil, nil
	i.x, i.st, i.ctx = nil, nil, nil
	return err
}

// close releases the instance's module.
func (i *instance) close() {
	if i.mod == nil {
		return
	}
	i.p.h.insts.Delete(i.mod)
	_ = i.mod.Close(context.Background())
	i.cctx.stop()
	i.stdout.flush()
	i.stderr.flush()
}

// violate records the first ABI violation of the current call.
func (i *instance) violate(format string, args ...any) {
	if i.violation == nil {
		i.violation = fmt.Errorf("%w: %s", errViolation, fmt.Sprintf(format, args...))
	}
}

// read returns guest memory [ptr, ptr+n) or records a violation.
func (i *instance) read(ptr, n uint32, what string) ([]byte, bool) {
	b, ok := i.mem.Read(ptr, n)
	if !ok {
		i.violate("%s: range [%d, +%d) is outside guest memory (%d bytes)", what, ptr, n, i.mem.Size())
		return nil, false
	}
	return b, true
}

// writeString implements the (buf, buf_limit) -> len convention for s.
func (i *instance) writeString(buf, limit uint32, s string, what string) uint32 {
	n := uint32(len(s))
	if n == 0 || n > limit {
		return n
	}
	if !i.mem.WriteString(buf, s) {
		i.violate("%s: buffer [%d, +%d) is outside guest memory (%d bytes)", what, buf, n, i.mem.Size())
		return 0
	}
	return n
}

// writeBytes is writeString for bytes.
func (i *instance) writeBytes(buf, limit uint32, b []byte, what string) uint32 {
	n := uint32(len(b))
	if n == 0 || n > limit {
		return n
	}
	if !i.mem.Write(buf, b) {
		i.violate("%s: buffer [%d, +%d) is outside guest memory (%d bytes)", what, buf, n, i.mem.Size())
		return 0
	}
	return n
}

// guestWriter sends a guest's stdout or stderr to the log line by line and
// keeps the last bytes for error messages.
type guestWriter struct {
	log    *zap.Logger
	level  zapcore.Level
	stream string
	line   []byte
	tail   []byte
}

const (
	maxGuestLine = 4 << 10
	maxGuestTail = 1 << 10
)

func newGuestWriter(log *zap.Logger, level zapcore.Level, stream string) *guestWriter {
	return &guestWriter{log: log, level: level, stream: stream}
}

func (w *guestWriter) Write(b []byte) (int, error) {
	w.tail = append(w.tail, b...)
	if len(w.tail) > maxGuestTail {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-maxGuestTail:]...)
	}
	for _, c := range b {
		if c == '\n' {
			w.flush()
			continue
		}
		if len(w.line) < maxGuestLine {
			w.line = append(w.line, c)
		}
	}
	return len(b), nil
}

func (w *guestWriter) flush() {
	if len(w.line) == 0 {
		return
	}
	if ce := w.log.Check(w.level, "guest output"); ce != nil {
		ce.Write(zap.String("stream", w.stream), zap.ByteString("line", w.line))
	}
	w.line = w.line[:0]
}

// tailNote returns the guest's last stderr output as an error suffix.
func (w *guestWriter) tailNote() string {
	t := strings.TrimSpace(string(w.tail))
	if t == "" {
		return ""
	}
	if i := strings.LastIndex(t, "\npanic: "); i >= 0 {
		t = t[i+1:]
	} else if i := strings.Index(t, "panic: "); i >= 0 {
		t = t[i:]
	}
	if len(t) > 300 {
		t = t[:300] + "..."
	}
	return " (guest stderr: " + strings.ReplaceAll(t, "\n", " | ") + ")"
}
