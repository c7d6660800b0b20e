package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// ConfigStatus is the JSON answer of GET /config.
type ConfigStatus struct {
	// Version is the hash of the config serving now.
	Version string `json:"version"`
	// File is the config file it was loaded from.
	File string `json:"file"`
	// LoadedAt is when the serving config went live.
	LoadedAt time.Time `json:"loaded_at"`
	// LastReload is the outcome of the last reload attempt; null before any.
	LastReload *ReloadResult `json:"last_reload"`
	// Warnings are problems that did not refuse the config, such as changes
	// to static fields that need a restart.
	Warnings []string `json:"warnings"`
	// Config is the effective config (defaults applied), secrets redacted.
	Config any `json:"config"`
}

// ReloadResult is the outcome of one reload attempt.
type ReloadResult struct {
	// Result is "ok" or "error".
	Result string `json:"result"`
	// At is when the attempt ended.
	At time.Time `json:"at"`
	// Version is the version that went live ("ok") or the version that
	// kept serving ("error").
	Version string `json:"version"`
	// Error is the reason the new config was refused.
	Error string `json:"error,omitempty"`
	// Errors is Error split into one problem per line (file:line or field path).
	Errors []string `json:"errors,omitempty"`
}

// Tracker keeps what GET /config shows. The proxy calls Loaded for the
// config it starts with and ReloadOK / ReloadFailed after each reload
// attempt; the admin server reads it through ConfigStatus. It is safe for
// concurrent use.
type Tracker struct {
	mu   sync.Mutex
	st   ConfigStatus
	boot *config.Config // the config the listeners were started with
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{} }

// Loaded records the config the process started with.
func (t *Tracker) Loaded(cfg *config.Config, version string, warnings []string) {
	red := Redact(cfg)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.Version, t.st.LoadedAt, t.st.Warnings, t.st.Config = version, time.Now().UTC(), nonNil(warnings), red
	if cfg != nil {
		t.st.File = cfg.File
	}
}

// Record is the one call a proxy needs after every load or reload attempt:
// err != nil records a refused config; otherwise the first call records the
// config the process started with and later calls a reload that put cfg live
// as version, with a warning for every static field that differs from the
// first config (listeners keep running as first configured).
func (t *Tracker) Record(cfg *config.Config, version string, err error) {
	if err != nil {
		t.ReloadFailed(err)
		return
	}
	t.mu.Lock()
	boot := t.boot
	if boot == nil {
		t.boot = cfg
	}
	t.mu.Unlock()
	if boot == nil {
		t.Loaded(cfg, version, nil)
		return
	}
	t.ReloadOK(cfg, version, StaticChanges(boot, cfg))
}

// ReloadOK records a reload that put cfg live as version.
func (t *Tracker) ReloadOK(cfg *config.Config, version string, warnings []string) {
	t.Loaded(cfg, version, warnings)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.LastReload = &ReloadResult{Result: "ok", At: t.st.LoadedAt, Version: version}
}

// ReloadFailed records a refused reload; the serving config is unchanged.
func (t *Tracker) ReloadFailed(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	lines := splitLines(msg)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.LastReload = &ReloadResult{Result: "error", At: time.Now().UTC(), Version: t.st.Version, Error: msg, Errors: lines}
}

// Version returns the serving version.
func (t *Tracker) Version() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st.Version
}

// ConfigStatus returns a copy of the status (a ConfigStatus); pass it as
// Deps.Config.
func (t *Tracker) ConfigStatus() any {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.st
	st.Warnings = slices.Clone(st.Warnings)
	if st.LastReload != nil {
		lr := *st.LastReload
		st.LastReload = &lr
	}
	return st
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// Version hashes a config's source bytes and any extra parts (e.g. the
// sha256 of each plugin file) into a short stable version string: the first
// 16 hex digits of a SHA-256.
func Version(src []byte, parts ...string) string {
	h := sha256.New()
	h.Write(src)
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// StaticChanges lists the differences between two configs in fields that
// only take effect after a restart (mode, admin address, listeners' address,
// TLS, HTTP/2, h2c, HTTP/3 and role). A reload applies the rest and should
// report these as warnings.
func StaticChanges(old, cur *config.Config) []string {
	if old == nil || cur == nil {
		return nil
	}
	var out []string
	diff := func(field string, a, b any) {
		if a != b {
			out = append(out, fmt.Sprintf("%s changed from %v to %v: restart to apply", field, a, b))
		}
	}
	diff("mode", old.Mode, cur.Mode)
	diff("admin.address", old.Admin.Address, cur.Admin.Address)
	byName := func(ls []config.Listener) map[string]config.Listener {
		m := make(map[string]config.Listener, len(ls))
		for i, l := range ls {
			name := l.Name
			if name == "" {
				name = fmt.Sprintf("listeners[%d]", i)
			}
			m[name] = l
		}
		return m
	}
	om, cm := byName(old.Listeners), byName(cur.Listeners)
	names := make([]string, 0, len(om)+len(cm))
	for n := range om {
		names = append(names, n)
	}
	for n := range cm {
		if _, ok := om[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		o, ok1 := om[n]
		c, ok2 := cm[n]
		switch {
		case !ok1:
			out = append(out, fmt.Sprintf("listener %q added: restart to apply", n))
		case !ok2:
			out = append(out, fmt.Sprintf("listener %q removed: restart to apply", n))
		default:
			p := "listener " + n
			diff(p+" address", o.Address, c.Address)
			diff(p+" tls", o.TLS != nil, c.TLS != nil)
			diff(p+" http2", boolOf(o.HTTP2), boolOf(c.HTTP2))
			diff(p+" h2c", o.H2C, c.H2C)
			diff(p+" http3", o.HTTP3 != nil && boolOf(o.HTTP3.Enabled), c.HTTP3 != nil && boolOf(c.HTTP3.Enabled))
			diff(p+" role", o.Role, c.Role)
		}
	}
	return out
}

func boolOf(b *bool) bool { return b != nil && *b }
