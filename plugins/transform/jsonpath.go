package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// errNotJSON means the body is not a JSON document we can edit.
var errNotJSON = errors.New("body is not JSON")

// dotPath is a parsed "a.b.0.c" path. A segment that is a number indexes
// an array when the value there is an array, and is a key otherwise.
type dotPath []string

func parseDotPath(s string) (dotPath, error) {
	if s == "" {
		return nil, errors.New("empty path")
	}
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("path %q has an empty segment", s)
		}
	}
	return parts, nil
}

func (p dotPath) String() string { return strings.Join(p, ".") }

// decodeJSON parses a body keeping numbers exact.
func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotJSON, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", errNotJSON)
	}
	return v, nil
}

// getPath returns the value at p.
func getPath(doc any, p dotPath) (any, bool) {
	cur := doc
	for _, seg := range p {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[seg]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// setPath sets the value at p, creating objects for missing parents. It
// returns the (possibly new) root. Setting through a scalar or past the end
// of an array fails.
func setPath(doc any, p dotPath, val any) (any, error) {
	if len(p) == 0 {
		return val, nil
	}
	switch c := doc.(type) {
	case nil:
		child, err := setPath(nil, p[1:], val)
		if err != nil {
			return nil, err
		}
		return map[string]any{p[0]: child}, nil
	case map[string]any:
		child, err := setPath(c[p[0]], p[1:], val)
		if err != nil {
			return nil, err
		}
		c[p[0]] = child
		return c, nil
	case []any:
		i, err := strconv.Atoi(p[0])
		if err != nil || i < 0 || i >= len(c) {
			return nil, fmt.Errorf("index %q out of range", p[0])
		}
		child, err := setPath(c[i], p[1:], val)
		if err != nil {
			return nil, err
		}
		c[i] = child
		return c, nil
	}
	return nil, fmt.Errorf("cannot set %q inside a %s", p[0], kindOf(doc))
}

// removePath deletes the value at p and returns the (possibly new) root;
// removed is false when nothing was there.
func removePath(doc any, p dotPath) (root any, removed bool) {
	parent, ok := getPath(doc, p[:len(p)-1])
	if !ok {
		return doc, false
	}
	last := p[len(p)-1]
	switch c := parent.(type) {
	case map[string]any:
		if _, ok := c[last]; ok {
			delete(c, last)
			return doc, true
		}
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(c) {
			return doc, false
		}
		shorter := append(append(make([]any, 0, len(c)-1), c[:i]...), c[i+1:]...)
		root, err := setPath(doc, p[:len(p)-1], shorter)
		if err != nil {
			return doc, false
		}
		return root, true
	}
	return doc, false
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	}
	return "value"
}
