package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/textproto"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/wasmgate/wasmgate/sdk"
)

// defaultMaxBody is the largest body transform edits; bigger bodies pass
// unchanged.
const defaultMaxBody = 1 << 20

// Config is the transform plugin config (JSON; YAML in the proxy config).
type Config struct {
	// Request edits the request before it goes upstream.
	Request RequestConfig `json:"request"`
	// Response edits the response before it goes to the client.
	Response ResponseConfig `json:"response"`
	// MaxBodyBytes is the largest body that JSON edits buffer. Bigger bodies
	// pass unchanged with a log line. Default 1 MiB.
	MaxBodyBytes int `json:"max_body_bytes"`
}

// RequestConfig edits the request.
type RequestConfig struct {
	// Headers edits request headers.
	Headers HeaderOps `json:"headers"`
	// Path rewrites the path with a regex.
	Path *PathRewrite `json:"path"`
	// Query edits query parameters.
	Query QueryOps `json:"query"`
	// Body edits a JSON request body.
	Body BodyOps `json:"body"`
}

// ResponseConfig edits the response.
type ResponseConfig struct {
	// Headers edits response headers.
	Headers HeaderOps `json:"headers"`
	// Body edits a JSON response body.
	Body BodyOps `json:"body"`
	// Status maps upstream status codes to others, e.g. {"404": 410}.
	Status map[string]int `json:"status"`
}

// HeaderOps are applied in the order rename, remove, set, add. Values are
// templates.
type HeaderOps struct {
	// Rename moves a header's values to a new name: {"x-old": "x-new"}.
	Rename map[string]string `json:"rename"`
	// Remove deletes headers.
	Remove []string `json:"remove"`
	// Set replaces a header's values.
	Set map[string]string `json:"set"`
	// Add appends a value.
	Add map[string]string `json:"add"`
}

// PathRewrite replaces Regex matches in the path (not the query) with
// Replacement, which may use captures ($1, ${1}, ${name}) and templates.
type PathRewrite struct {
	Regex       string `json:"regex"`
	Replacement string `json:"replacement"`
}

// QueryOps are applied in the order remove, set, add. Values are templates.
type QueryOps struct {
	// Remove deletes parameters.
	Remove []string `json:"remove"`
	// Set replaces a parameter's values.
	Set map[string]string `json:"set"`
	// Add appends a value.
	Add map[string]string `json:"add"`
}

// BodyOps edit a JSON body by dot path ("user.address.city", "items.0.id"),
// in the order rename, remove, set.
type BodyOps struct {
	// Rename moves a field: {"user.name": "user.full_name"}.
	Rename map[string]string `json:"rename"`
	// Remove deletes fields.
	Remove []string `json:"remove"`
	// Set sets fields to JSON values; string values are templates.
	Set map[string]json.RawMessage `json:"set"`
}

type headerOp struct {
	kind string // rename, remove, set, add
	name string
	to   string
	tmpl *template
}

type queryOp struct {
	kind string // remove, set, add
	name string
	tmpl *template
}

type bodyOp struct {
	kind string // rename, remove, set
	path dotPath
	to   dotPath
	val  any       // set: a decoded JSON value
	tmpl *template // set: a string value
}

type pathRewrite struct {
	re   *regexp.Regexp
	tmpl *template
}

// program is a compiled config.
type program struct {
	reqHeaders  []headerOp
	path        *pathRewrite
	query       []queryOp
	reqBody     []bodyOp
	respHeaders []headerOp
	respBody    []bodyOp
	status      map[int]int
	maxBody     int
}

// parseConfig decodes and validates a config, joining every problem with
// its field path.
func parseConfig(data []byte) (*program, error) {
	var c Config
	if err := sdk.DecodeConfig(data, &c); err != nil {
		return nil, fmt.Errorf("transform: %w", err)
	}
	p, err := c.compile()
	if err != nil {
		return nil, fmt.Errorf("transform: config: %w", err)
	}
	return p, nil
}

func (c *Config) compile() (*program, error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	p := &program{maxBody: c.MaxBodyBytes}
	if p.maxBody == 0 {
		p.maxBody = defaultMaxBody
	}
	if p.maxBody < 0 {
		add(fmt.Errorf("max_body_bytes: %d is negative", c.MaxBodyBytes))
	}
	var err error
	p.reqHeaders, err = compileHeaders("request.headers", &c.Request.Headers)
	add(err)
	p.respHeaders, err = compileHeaders("response.headers", &c.Response.Headers)
	add(err)
	if r := c.Request.Path; r != nil {
		re, err := regexp.Compile(r.Regex)
		if err != nil || r.Regex == "" {
			add(fmt.Errorf("request.path.regex: %q: invalid regex: %v", r.Regex, err))
		}
		t, err := parseTemplate(r.Replacement)
		add(prefixErr("request.path.replacement", err))
		p.path = &pathRewrite{re: re, tmpl: t}
	}
	p.query, err = compileQuery(&c.Request.Query)
	add(err)
	p.reqBody, err = compileBody("request.body", &c.Request.Body)
	add(err)
	p.respBody, err = compileBody("response.body", &c.Response.Body)
	add(err)
	if len(c.Response.Status) > 0 {
		p.status = map[int]int{}
		for from, to := range c.Response.Status {
			f, err := strconv.Atoi(from)
			if err != nil || f < 100 || f > 599 || to < 100 || to > 599 {
				add(fmt.Errorf("response.status[%q]: both codes must be 100-599, got %q -> %d", from, from, to))
				continue
			}
			p.status[f] = to
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

func prefixErr(at string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", at, err)
}

func compileHeaders(at string, h *HeaderOps) ([]headerOp, error) {
	var ops []headerOp
	var errs []error
	check := func(field, name string) bool {
		if !validHeaderName(name) {
			errs = append(errs, fmt.Errorf("%s.%s: invalid header name %q", at, field, name))
			return false
		}
		return true
	}
	for _, from := range sortedKeys(h.Rename) {
		to := h.Rename[from]
		if check("rename", from) && check("rename", to) {
			ops = append(ops, headerOp{kind: "rename", name: canon(from), to: canon(to)})
		}
	}
	for _, n := range h.Remove {
		if check("remove", n) {
			ops = append(ops, headerOp{kind: "remove", name: canon(n)})
		}
	}
	for _, kind := range []string{"set", "add"} {
		m := h.Set
		if kind == "add" {
			m = h.Add
		}
		for _, n := range sortedKeys(m) {
			if !check(kind, n) {
				continue
			}
			t, err := parseTemplate(m[n])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s[%q]: %w", at, kind, n, err))
				continue
			}
			ops = append(ops, headerOp{kind: kind, name: canon(n), tmpl: t})
		}
	}
	return ops, errors.Join(errs...)
}

func compileQuery(q *QueryOps) ([]queryOp, error) {
	var ops []queryOp
	var errs []error
	for _, n := range q.Remove {
		if n == "" {
			errs = append(errs, errors.New("request.query.remove: empty name"))
			continue
		}
		ops = append(ops, queryOp{kind: "remove", name: n})
	}
	for _, kind := range []string{"set", "add"} {
		m := q.Set
		if kind == "add" {
			m = q.Add
		}
		for _, n := range sortedKeys(m) {
			t, err := parseTemplate(m[n])
			if err != nil || n == "" {
				errs = append(errs, fmt.Errorf("request.query.%s[%q]: empty name or bad template: %v", kind, n, err))
				continue
			}
			ops = append(ops, queryOp{kind: kind, name: n, tmpl: t})
		}
	}
	return ops, errors.Join(errs...)
}

func compileBody(at string, b *BodyOps) ([]bodyOp, error) {
	var ops []bodyOp
	var errs []error
	for _, from := range sortedKeys(b.Rename) {
		fp, err1 := parseDotPath(from)
		tp, err2 := parseDotPath(b.Rename[from])
		if err := errors.Join(err1, err2); err != nil {
			errs = append(errs, fmt.Errorf("%s.rename[%q]: %w", at, from, err))
			continue
		}
		ops = append(ops, bodyOp{kind: "rename", path: fp, to: tp})
	}
	for i, r := range b.Remove {
		dp, err := parseDotPath(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.remove[%d]: %w", at, i, err))
			continue
		}
		ops = append(ops, bodyOp{kind: "remove", path: dp})
	}
	for _, k := range sortedKeys(b.Set) {
		dp, err := parseDotPath(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.set[%q]: %w", at, k, err))
			continue
		}
		v, err := decodeJSON(b.Set[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.set[%q]: %w", at, k, err))
			continue
		}
		op := bodyOp{kind: "set", path: dp, val: v}
		if s, ok := v.(string); ok {
			if op.tmpl, err = parseTemplate(s); err != nil {
				errs = append(errs, fmt.Errorf("%s.set[%q]: %w", at, k, err))
				continue
			}
		}
		ops = append(ops, op)
	}
	return ops, errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func canon(h string) string { return textproto.CanonicalMIMEHeaderKey(h) }

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// isJSON reports whether a Content-Type names JSON (application/json or
// any +json type).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// needsRequestBody and needsResponseBody tell the glue whether to buffer.
func (p *program) needsRequestBody() bool  { return len(p.reqBody) > 0 }
func (p *program) needsResponseBody() bool { return len(p.respBody) > 0 }

// hasResponseWork reports whether the response phase does anything.
func (p *program) hasResponseWork() bool {
	return len(p.respHeaders) > 0 || len(p.respBody) > 0 || len(p.status) > 0
}
