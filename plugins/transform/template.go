package main

import (
	"fmt"
	"strings"
)

// lookup resolves template variables for one request.
type lookup struct {
	value    func(key string) (string, bool)
	property func(name string) (string, bool)
	header   func(name string) (string, bool)
}

// template is a string with ${...} references to request facts:
//
//	${consumer} ${tier}        per-request values set by api-key
//	${jwt.<claim>}             per-request values set by jwt-auth
//	${value.<key>}             any per-request value
//	${request_id}              the request id property
//	${property.<name>}         any request property (client_ip, peer_id, route ...)
//	${header.<Name>}           a request header
//
// A missing fact expands to "". Any other "${...}" or "$" is kept verbatim,
// so regex replacements may still use ${1} and $1.
type template struct {
	raw   string
	parts []part
}

type part struct {
	lit  string
	kind string // "", value, property, header
	name string
}

// parseTemplate splits s into literals and references.
func parseTemplate(s string) (*template, error) {
	t := &template{raw: s}
	rest := s
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			t.parts = append(t.parts, part{lit: rest})
			return t, nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			t.parts = append(t.parts, part{lit: rest})
			return t, nil
		}
		ref := rest[i+2 : i+j]
		kind, name, ok := classify(ref)
		if !ok {
			t.parts = append(t.parts, part{lit: rest[:i+j+1]})
		} else {
			if name == "" {
				return nil, fmt.Errorf("template %q: empty name in ${%s}", s, ref)
			}
			t.parts = append(t.parts, part{lit: rest[:i]}, part{kind: kind, name: name})
		}
		rest = rest[i+j+1:]
	}
}

// classify maps a reference to a lookup; ok is false for names that are not
// ours (left verbatim).
func classify(ref string) (kind, name string, ok bool) {
	switch {
	case ref == "consumer" || ref == "tier":
		return "value", ref, true
	case ref == "request_id":
		return "property", "request_id", true
	case strings.HasPrefix(ref, "jwt."):
		if ref == "jwt." {
			return "value", "", true
		}
		return "value", ref, true
	case strings.HasPrefix(ref, "value."):
		return "value", ref[len("value."):], true
	case strings.HasPrefix(ref, "property."):
		return "property", ref[len("property."):], true
	case strings.HasPrefix(ref, "header."):
		return "header", ref[len("header."):], true
	}
	return "", "", false
}

// static reports whether the template has no references.
func (t *template) static() bool {
	for _, p := range t.parts {
		if p.kind != "" {
			return false
		}
	}
	return true
}

// expand renders the template. escape, when set, is applied to expanded
// values only (for example to double "$" in a regex replacement).
func (t *template) expand(l *lookup, escape func(string) string) string {
	if t.static() {
		return t.raw
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.kind == "" {
			b.WriteString(p.lit)
			continue
		}
		var v string
		var f func(string) (string, bool)
		switch p.kind {
		case "value":
			f = l.value
		case "property":
			f = l.property
		case "header":
			f = l.header
		}
		if f != nil {
			v, _ = f(p.name)
		}
		if escape != nil {
			v = escape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}
