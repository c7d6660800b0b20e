package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, parses, defaults and validates the config at path. Every error
// names the file and, where known, the line; all problems are reported at once.
func Load(path string) (*Config, error) { return LoadMode(path, "") }

// LoadMode is Load with the mode forced (the --mode flag) before defaults.
func LoadMode(path, mode string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseMode(path, src, mode)
}

// Parse is Load on bytes already read; file names the source in errors.
func Parse(file string, src []byte) (*Config, error) { return ParseMode(file, src, "") }

// ParseMode is Parse with the mode forced when mode is not empty.
func ParseMode(file string, src []byte, mode string) (*Config, error) {
	c, err := decode(file, src)
	if err != nil {
		return nil, err
	}
	if mode != "" {
		c.Mode = mode
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, c.locate(err)
	}
	return c, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

func decode(file string, src []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, syntaxError(file, err)
	}
	c := &Config{File: file, Source: src}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, errEOF) || err.Error() == "EOF" {
			return nil, fmt.Errorf("%s: config is empty", file)
		}
		return nil, syntaxError(file, err)
	}
	c.lines = map[string]int{}
	if len(root.Content) > 0 {
		indexLines(root.Content[0], "", c.lines)
	}
	return c, nil
}

var errEOF = errors.New("EOF")

// syntaxError turns yaml.v3's "yaml: line 3: ..." and unmarshal errors into
// one "file:line: reason" per problem.
func syntaxError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, e := range te.Errors {
			errs = append(errs, lineError(file, e))
		}
		return errors.Join(errs...)
	}
	return lineError(file, strings.TrimPrefix(err.Error(), "yaml: "))
}

func lineError(file, msg string) error {
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
		line := msg[m[2]:m[3]]
		rest := msg[:m[0]] + msg[m[1]:]
		return fmt.Errorf("%s:%s: %s", file, line, strings.TrimSpace(rest))
	}
	return fmt.Errorf("%s: %s", file, msg)
}

// indexLines records the line of every mapping key and sequence item under
// its field path (routes[2].cluster).
func indexLines(n *yaml.Node, path string, out map[string]int) {
	out[path] = n.Line
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[p] = k.Line
			if v.Kind == yaml.MappingNode || v.Kind == yaml.SequenceNode {
				indexLines(v, p, out)
				out[p] = k.Line
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			indexLines(item, path+"["+strconv.Itoa(i)+"]", out)
		}
	}
}

// Line returns the line of a field path, trying its parents when the field
// itself is absent (a missing field is reported at its parent).
func (c *Config) Line(path string) int {
	for p := path; p != ""; {
		if l, ok := c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// locate adds file and line to every FieldError in err.
func (c *Config) locate(err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) {
			fe.File = c.File
			fe.Line = c.Line(fe.Path)
		}
	}
	return errors.Join(errs...)
}
