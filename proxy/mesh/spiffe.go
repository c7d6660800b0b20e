// Package mesh is wasmgate's sidecar mode: SPIFFE identities, the small CA
// behind `wasmgate ca`, mTLS configurations that verify peers against a trust
// bundle reloaded from disk, and the expansion of a config's `mesh:` section
// into ordinary listeners, routes and clusters.
package mesh

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrInvalidID is wrapped by every SPIFFE ID parsing error.
var ErrInvalidID = errors.New("mesh: invalid SPIFFE ID")

// maxIDLen is the longest SPIFFE ID accepted (SPIFFE spec: 2048 bytes).
const maxIDLen = 2048

// ID is a parsed SPIFFE ID: spiffe://TrustDomain/Path.
type ID struct {
	// TrustDomain is the authority part, e.g. "wasmgate.local".
	TrustDomain string
	// Path is the path part including its leading slash, e.g. "/ns/default/sa/orders".
	Path string
}

// String returns the ID in its URI form.
func (id ID) String() string {
	if id.TrustDomain == "" {
		return ""
	}
	return "spiffe://" + id.TrustDomain + id.Path
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.TrustDomain == "" }

// URL returns the ID as a URL for a certificate's URI SAN.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: id.Path}
}

// Namespace returns NS of an ID of the form /ns/NS/sa/NAME, or "".
func (id ID) Namespace() string {
	ns, _, ok := id.service()
	if !ok {
		return ""
	}
	return ns
}

// Service returns NAME of an ID of the form /ns/NS/sa/NAME, or "".
func (id ID) Service() string {
	_, sa, ok := id.service()
	if !ok {
		return ""
	}
	return sa
}

func (id ID) service() (ns, sa string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(id.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return "", "", false
	}
	return parts[1], parts[3], true
}

// ParseID parses and validates a SPIFFE ID as the SPIFFE specification
// defines it: scheme spiffe, a lower-case trust domain without port or user
// info, a path of non-empty segments made of letters, digits, '.', '-' and
// '_' (no "." or ".." segments), no query and no fragment.
func ParseID(s string) (ID, error) {
	if len(s) > maxIDLen {
		return ID{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidID, maxIDLen)
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return ID{}, fmt.Errorf("%w %q: scheme must be spiffe://", ErrInvalidID, s)
	}
	td, path, _ := strings.Cut(rest, "/")
	if err := ValidateTrustDomain(td); err != nil {
		return ID{}, fmt.Errorf("%w %q: %v", ErrInvalidID, s, err)
	}
	if path != "" || strings.HasSuffix(rest, "/") {
		path = "/" + path
		if err := validatePath(path); err != nil {
			return ID{}, fmt.Errorf("%w %q: %v", ErrInvalidID, s, err)
		}
	}
	return ID{TrustDomain: td, Path: path}, nil
}

// ServiceID returns spiffe://trustDomain/ns/namespace/sa/service, validated.
func ServiceID(trustDomain, namespace, service string) (ID, error) {
	for _, seg := range []string{namespace, service} {
		if seg == "" || strings.Contains(seg, "/") {
			return ID{}, fmt.Errorf("%w: namespace and service must be single non-empty path segments, got %q", ErrInvalidID, seg)
		}
	}
	return ParseID("spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + service)
}

// ValidateTrustDomain checks a trust domain name: non-empty, lower-case
// letters, digits, '.', '-' and '_' only.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' {
			continue
		}
		return fmt.Errorf("trust domain %q: character %q not allowed (lower-case letters, digits, '.', '-', '_')", td, c)
	}
	return nil
}

func validatePath(p string) error {
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return errors.New("path has an empty segment")
		case ".", "..":
			return errors.New("path has a dot segment")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' {
				continue
			}
			return fmt.Errorf("path character %q not allowed", c)
		}
	}
	return nil
}

// IDFromCert returns the SPIFFE ID in cert's URI SANs. A SPIFFE certificate
// carries exactly one spiffe:// URI; none or several is an error.
func IDFromCert(cert *x509.Certificate) (ID, error) {
	var found []string
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u.String())
		}
	}
	switch len(found) {
	case 0:
		return ID{}, fmt.Errorf("%w: certificate has no spiffe:// URI SAN", ErrInvalidID)
	case 1:
		return ParseID(found[0])
	}
	return ID{}, fmt.Errorf("%w: certificate has %d spiffe:// URI SANs, want 1", ErrInvalidID, len(found))
}
