package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"

	"github.com/wasmgate/wasmgate/abi"
	"github.com/wasmgate/wasmgate/abi/pluginpb"
	"github.com/wasmgate/wasmgate/abi/wire"
	"github.com/wasmgate/wasmgate/proxy/filter"
)

// ErrUnavailable is returned for requests that arrive while the plugin
// process is down (being restarted or stopped).
var ErrUnavailable = errors.New("process: plugin not running")

// ErrConfigRefused wraps the plugin's refusal of its config.
var ErrConfigRefused = errors.New("process: plugin refused its config")

// proc supervises one plugin process.
type proc struct {
	h       *Host
	name    string
	path    string
	source  string
	config  []byte
	log     *zap.Logger
	svc     *hostService
	timeout time.Duration
	startTO time.Duration

	calls    atomic.Uint64
	failures atomic.Uint64
	restarts atomic.Uint64

	mu        sync.Mutex
	cur       *running // nil while down
	state     string
	lastErr   string
	lastErrAt time.Time

	quit     chan struct{}
	done     chan struct{}
	kick     chan struct{}
	stopOnce sync.Once
}

// running is one started process.
type running struct {
	client    *plugin.Client
	conn      *wire.Conn
	pid       int
	startedAt time.Time
	streams   *streams
	// From the plugin's Configure.
	wantsResponse bool
	features      uint32
}

func (h *Host) newProc(spec filter.Spec, deps filter.Deps, set Settings) (*proc, error) {
	path := spec.Path
	if path == "" {
		return nil, errors.New("process: plugin path is empty")
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, fmt.Errorf("process: plugin %s: %w", path, err)
	case st.IsDir() || st.Mode()&0o111 == 0:
		return nil, fmt.Errorf("process: plugin %s is not an executable file", path)
	}
	if spec.SHA256 != "" {
		if err := checkSHA(path, spec.SHA256); err != nil {
			return nil, err
		}
	}
	name := spec.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	log := deps.Logger
	if log == nil {
		log = h.log
	}
	log = log.Named("process").With(zap.String("plugin", name))
	p := &proc{
		h: h, name: name, path: path, source: spec.Source, config: spec.Config, log: log,
		timeout: h.opts.CallTimeout, startTO: h.opts.StartTimeout, state: "starting",
		quit: make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	if set.CallTimeout > 0 {
		p.timeout = set.CallTimeout
	}
	if set.StartTimeout > 0 {
		p.startTO = set.StartTimeout
	}
	p.svc = newHostService(h, p, deps)
	return p, nil
}

// start launches the process and checks the handshake and config; then a
// goroutine keeps it running until stop.
func (p *proc) start(ctx context.Context) error {
	r, err := p.launch(ctx)
	if err != nil {
		close(p.done)
		return err
	}
	p.setRunning(r)
	go p.supervise(r)
	return nil
}

// launch starts one process and configures it.
func (p *proc) launch(ctx context.Context) (*running, error) {
	cmd := exec.Command(p.path)
	cmd.Env = append(os.Environ(), "WASMGATE_PLUGIN_NAME="+p.name)
	setProcAttr(cmd)
	stderr := &lineWriter{log: p.log, level: zapcore.WarnLevel}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake(),
		Plugins:          plugin.PluginSet{wire.PluginName: &wire.GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "go-plugin", Output: &lineWriter{log: p.log, level: zapcore.DebugLevel}, Level: hclog.Warn}),
		Stderr:           stderr,
		StartTimeout:     p.startTO,
	})
	fail := func(err error) (*running, error) {
		client.Kill()
		return nil, fmt.Errorf("process: plugin %q (%s): %w", p.name, p.path, err)
	}
	rpc, err := client.Client()
	if err != nil {
		return fail(fmt.Errorf("start and handshake: %w", err))
	}
	raw, err := rpc.Dispense(wire.PluginName)
	if err != nil {
		return fail(fmt.Errorf("dispense: %w", err))
	}
	conn, ok := raw.(*wire.Conn)
	if !ok {
		return fail(fmt.Errorf("dispense: unexpected %T", raw))
	}
	id := conn.Broker.NextId()
	go conn.Broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		pluginpb.RegisterHostServer(s, p.svc)
		return s
	})
	cctx, cancel := context.WithTimeout(ctx, p.startTO)
	defer cancel()
	res, err := conn.Filter.Configure(cctx, &pluginpb.ConfigureRequest{
		Config: p.config, HostBrokerId: id, LogLevel: logLevel(p.log), Name: p.name,
	})
	if err != nil {
		return fail(fmt.Errorf("configure: %w", err))
	}
	if res.Error != "" {
		return fail(fmt.Errorf("%w: %s", ErrConfigRefused, res.Error))
	}
	r := &running{client: client, conn: conn, startedAt: time.Now(), wantsResponse: res.WantsResponse, features: res.Features,
		streams: &streams{client: conn.Filter}}
	if rc := client.ReattachConfig(); rc != nil {
		r.pid = rc.Pid
	}
	if ce := p.log.Check(zapcore.InfoLevel, "process plugin started"); ce != nil {
		ce.Write(zap.Int("pid", r.pid), zap.String("file", p.path))
	}
	return r, nil
}

func (p *proc) setRunning(r *running) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = r
	if r != nil {
		p.state = "serving"
	}
}

// current returns the serving process or nil.
func (p *proc) current() *running {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// supervise waits for the process to exit and restarts it with backoff
// until stop.
func (p *proc) supervise(r *running) {
	defer close(p.done)
	backoff := p.h.opts.MinBackoff
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			p.mu.Lock()
			p.cur, p.state = nil, "stopped"
			p.mu.Unlock()
			r.streams.close()
			r.client.Kill()
			return
		case <-tick.C:
		case <-p.kick:
		}
		if !r.client.Exited() {
			continue
		}
		up := time.Since(r.startedAt)
		p.mu.Lock()
		p.cur, p.state = nil, "restarting"
		p.mu.Unlock()
		r.streams.close()
		r.client.Kill()
		p.noteErr(fmt.Errorf("process exited after %v (pid %d)", up.Round(time.Millisecond), r.pid))
		p.log.Warn("process plugin exited; restarting", zap.Int("pid", r.pid), zap.Duration("up", up), zap.Duration("backoff", backoff))
		if up > 30*time.Second {
			backoff = p.h.opts.MinBackoff
		}
		for {
			select {
			case <-p.quit:
				p.mu.Lock()
				p.state = "stopped"
				p.mu.Unlock()
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, p.h.opts.MaxBackoff)
			p.restarts.Add(1)
			nr, err := p.launch(context.Background())
			if err != nil {
				p.noteErr(err)
				p.log.Error("restarting process plugin failed", zap.Error(err), zap.Duration("next_backoff", backoff))
				continue
			}
			r = nr
			p.setRunning(r)
			break
		}
	}
}

// poke makes the supervisor look at the process now (a call failed).
func (p *proc) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// stop ends the process and the supervisor and waits for both.
func (p *proc) stop() {
	p.stopOnce.Do(func() { close(p.quit) })
	<-p.done
}

func (p *proc) noteErr(err error) {
	p.mu.Lock()
	p.lastErr, p.lastErrAt = err.Error(), time.Now()
	p.mu.Unlock()
}

func (p *proc) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{
		Name: p.name, Kind: "process", File: p.path, Source: p.source, State: p.state,
		Restarts: p.restarts.Load(), Calls: p.calls.Load(), Failures: p.failures.Load(),
		LastError: p.lastErr, LastErrorAt: p.lastErrAt,
	}
	if p.cur != nil {
		s.PID, s.StartedAt = p.cur.pid, p.cur.startedAt
	}
	return s
}

// logLevel maps the logger's level to the abi level the plugin logs at.
func logLevel(l *zap.Logger) int32 {
	for _, c := range []struct {
		z zapcore.Level
		a abi.LogLevel
	}{{zapcore.DebugLevel, abi.LogLevelDebug}, {zapcore.InfoLevel, abi.LogLevelInfo}, {zapcore.WarnLevel, abi.LogLevelWarn}, {zapcore.ErrorLevel, abi.LogLevelError}} {
		if l.Core().Enabled(c.z) {
			return int32(c.a)
		}
	}
	return int32(abi.LogLevelNone)
}

// lineWriter logs each line written to it (plugin stderr, go-plugin's log).
type lineWriter struct {
	log   *zap.Logger
	level zapcore.Level
	mu    sync.Mutex
	buf   []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
		if line == "" {
			continue
		}
		level := w.level
		switch {
		case strings.HasPrefix(line, `{"@level":"debug"`) || strings.HasPrefix(line, `{"@level":"trace"`):
			// go-plugin's own chatter in the plugin (hclog JSON).
			level = zapcore.DebugLevel
		case strings.Contains(line, "[ERROR]"):
			level = zapcore.ErrorLevel
		case strings.Contains(line, "[WARN]"):
			level = zapcore.WarnLevel
		}
		if ce := w.log.Check(level, "plugin output"); ce != nil {
			ce.Write(zap.String("line", line))
		}
	}
	if len(w.buf) > 4096 {
		w.buf = w.buf[:0]
	}
	return len(b), nil
}
