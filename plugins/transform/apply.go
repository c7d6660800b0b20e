package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// headerBlock is the part of a header block transform edits; sdk.Header
// and the tests' fake satisfy it.
type headerBlock interface {
	Values(name string) []string
	Set(name, value string)
	Add(name, value string)
	Del(name string)
}

// applyHeaders runs header ops on h.
func applyHeaders(ops []headerOp, h headerBlock, l *lookup) {
	for _, op := range ops {
		switch op.kind {
		case "rename":
			vs := h.Values(op.name)
			if len(vs) == 0 {
				continue
			}
			vs = append([]string(nil), vs...)
			h.Del(op.name)
			h.Del(op.to)
			for _, v := range vs {
				h.Add(op.to, v)
			}
		case "remove":
			h.Del(op.name)
		case "set":
			h.Set(op.name, headerValue(op.tmpl.expand(l, nil)))
		case "add":
			h.Add(op.name, headerValue(op.tmpl.expand(l, nil)))
		}
	}
}

// headerValue drops characters that may not appear in a header value, so
// a template fed by a client header cannot split headers.
func headerValue(s string) string {
	if !strings.ContainsAny(s, "\r\n\x00") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return -1
		}
		return r
	}, s)
}

// rewriteURI applies the path rewrite and the query ops to a request URI.
// changed is false when the URI is the same.
func (p *program) rewriteURI(uri string, l *lookup) (string, bool) {
	if p.path == nil && len(p.query) == 0 {
		return uri, false
	}
	path, rawQuery, hasQuery := strings.Cut(uri, "?")
	if p.path != nil && p.path.re.MatchString(path) {
		// Expanded values are path-escaped (a value cannot add a query or
		// segments) and literal for the regex ("$" is not a capture).
		repl := p.path.tmpl.expand(l, func(v string) string { return strings.ReplaceAll(url.PathEscape(v), "$", "$$") })
		path = p.path.re.ReplaceAllString(path, repl)
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
	}
	if len(p.query) > 0 {
		q, _ := url.ParseQuery(rawQuery)
		for _, op := range p.query {
			switch op.kind {
			case "remove":
				q.Del(op.name)
			case "set":
				q.Set(op.name, op.tmpl.expand(l, nil))
			case "add":
				q.Add(op.name, op.tmpl.expand(l, nil))
			}
		}
		rawQuery = q.Encode()
		hasQuery = rawQuery != ""
	}
	out := path
	if hasQuery {
		out += "?" + rawQuery
	}
	return out, out != uri
}

// editBody runs body ops on a JSON document. It returns the new body and
// whether anything changed; errNotJSON (wrapped) when body is not JSON.
func editBody(ops []bodyOp, body []byte, l *lookup) ([]byte, bool, error) {
	doc, err := decodeJSON(body)
	if err != nil {
		return body, false, err
	}
	changed := false
	for _, op := range ops {
		switch op.kind {
		case "rename":
			v, ok := getPath(doc, op.path)
			if !ok {
				continue
			}
			next, _ := removePath(doc, op.path)
			next, err := setPath(next, op.to, v)
			if err != nil {
				return body, false, fmt.Errorf("rename %s to %s: %w", op.path, op.to, err)
			}
			doc, changed = next, true
		case "remove":
			var removed bool
			doc, removed = removePath(doc, op.path)
			changed = changed || removed
		case "set":
			val := op.val
			if op.tmpl != nil {
				val = op.tmpl.expand(l, nil)
			}
			next, err := setPath(doc, op.path, val)
			if err != nil {
				return body, false, fmt.Errorf("set %s: %w", op.path, err)
			}
			doc, changed = next, true
		}
	}
	if !changed {
		return body, false, nil
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return body, false, fmt.Errorf("encode body: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), true, nil
}

// mapStatus returns the mapped status code.
func (p *program) mapStatus(code int) (int, bool) {
	to, ok := p.status[code]
	return to, ok
}
