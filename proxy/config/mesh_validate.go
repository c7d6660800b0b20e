package config

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// mTLS modes of a mesh inbound listener.
const (
	MeshMTLSStrict     = "strict"
	MeshMTLSPermissive = "permissive"
)

// applyMeshDefaults fills the mesh section's unset fields.
func (c *Config) applyMeshDefaults() {
	m := c.Mesh
	if m == nil {
		return
	}
	if m.Namespace == "" {
		m.Namespace = "default"
	}
	if in := m.Inbound; in != nil && in.MTLS == "" {
		in.MTLS = MeshMTLSStrict
	}
	if out := m.Outbound; out != nil && out.Timeout == 0 {
		out.Timeout = 15 * time.Second
	}
	c.defaultFilters(m.inboundFilters())
	c.defaultFilters(m.outboundFilters())
	ApplyMeshServiceDefaults(m.Services, m.Namespace)
}

// ApplyMeshServiceDefaults fills services' unset fields; proxy/mesh also
// calls it for services read from a registry file.
func ApplyMeshServiceDefaults(svcs []MeshService, namespace string) {
	for i := range svcs {
		s := &svcs[i]
		if s.Namespace == "" {
			s.Namespace = namespace
		}
		for j := range s.Endpoints {
			if s.Endpoints[j].Weight == 0 {
				s.Endpoints[j].Weight = 1
			}
		}
	}
}

func (m *Mesh) inboundFilters() []Filter {
	if m.Inbound == nil {
		return nil
	}
	return m.Inbound.Filters
}

func (m *Mesh) outboundFilters() []Filter {
	if m.Outbound == nil {
		return nil
	}
	return m.Outbound.Filters
}

// validateMesh checks the mesh section.
func (c *Config) validateMesh(p *problems) {
	m := c.Mesh
	if m == nil {
		return
	}
	if c.Mode != ModeSidecar {
		p.add("mesh", "needs mode sidecar, got %q", c.Mode)
	}
	if m.TrustDomain == "" {
		p.add("mesh.trust_domain", "is required")
	} else if !meshName(m.TrustDomain, false) {
		p.add("mesh.trust_domain", "must be lower-case letters, digits, '.', '-' or '_', got %q", m.TrustDomain)
	}
	checkMeshName(p, "mesh.service", m.Service, true)
	checkMeshName(p, "mesh.namespace", m.Namespace, true)
	for _, f := range []struct{ path, val string }{
		{"mesh.cert_file", m.CertFile}, {"mesh.key_file", m.KeyFile}, {"mesh.bundle_file", m.BundleFile},
	} {
		if f.val == "" {
			p.add(f.path, "is required")
		}
	}
	if m.Inbound == nil && m.Outbound == nil {
		p.add("mesh", "needs inbound, outbound or both")
	}
	if in := m.Inbound; in != nil {
		checkAddr(p, "mesh.inbound.address", in.Address)
		checkAddr(p, "mesh.inbound.app", in.App)
		if in.MTLS != MeshMTLSStrict && in.MTLS != MeshMTLSPermissive {
			p.add("mesh.inbound.mtls", "must be strict or permissive, got %q", in.MTLS)
		}
		if h := in.IdentityHeader; h != "" && !validHeaderName(h) {
			p.add("mesh.inbound.identity_header", "is not a valid header name: %q", h)
		}
		validateFilters(p, "mesh.inbound.filters", in.Filters)
	}
	if out := m.Outbound; out != nil {
		checkAddr(p, "mesh.outbound.address", out.Address)
		if host, _, err := net.SplitHostPort(out.Address); err == nil && !isLoopback(host) {
			p.add("mesh.outbound.address", "must be a loopback address (the app's private door), got %q", out.Address)
		}
		if out.Timeout < 0 {
			p.add("mesh.outbound.timeout", "must not be negative")
		}
		if out.Retry != nil {
			validateRetry(p, "mesh.outbound.retry", out.Retry)
		}
		validateFilters(p, "mesh.outbound.filters", out.Filters)
	}
	if m.Inbound != nil && m.Outbound != nil && m.Inbound.Address == m.Outbound.Address {
		p.add("mesh.outbound.address", "must differ from mesh.inbound.address")
	}
	ValidateMeshServices(p.addErr, "mesh.services", m.Services)
}

// ValidateMeshServices checks a service registry (static or from a file);
// report receives each problem with its field path under prefix.
func ValidateMeshServices(report func(path, msg string), prefix string, svcs []MeshService) {
	names := map[string]bool{}
	for _, s := range svcs {
		names[s.Name] = true
	}
	seen := map[string]bool{}
	for i, s := range svcs {
		path := fmt.Sprintf("%s[%d]", prefix, i)
		if !meshName(s.Name, true) {
			report(path+".name", fmt.Sprintf("must be a service name (letters, digits, '.', '-', '_'), got %q", s.Name))
		} else if seen[s.Name] {
			report(path+".name", fmt.Sprintf("duplicate service %q", s.Name))
		}
		seen[s.Name] = true
		if s.Namespace != "" && !meshName(s.Namespace, true) {
			report(path+".namespace", fmt.Sprintf("must be letters, digits, '.', '-' or '_', got %q", s.Namespace))
		}
		if s.SPIFFEID != "" && !strings.HasPrefix(s.SPIFFEID, "spiffe://") {
			report(path+".spiffe_id", fmt.Sprintf("must be a spiffe:// URI, got %q", s.SPIFFEID))
		}
		switch {
		case len(s.Endpoints) == 0 && len(s.Versions) == 0:
			report(path, "needs endpoints or versions")
		case len(s.Endpoints) > 0 && len(s.Versions) > 0:
			report(path, "set endpoints or versions, not both")
		}
		for j, e := range s.Endpoints {
			checkAddrReport(report, fmt.Sprintf("%s.endpoints[%d].address", path, j), e.Address)
		}
		total := 0
		vnames := map[string]bool{}
		for j, v := range s.Versions {
			vp := fmt.Sprintf("%s.versions[%d]", path, j)
			if !meshName(v.Name, true) {
				report(vp+".name", fmt.Sprintf("must be a version name (letters, digits, '.', '-', '_'), got %q", v.Name))
			} else if vnames[v.Name] {
				report(vp+".name", fmt.Sprintf("duplicate version %q", v.Name))
			}
			vnames[v.Name] = true
			if v.Weight < 0 {
				report(vp+".weight", "must not be negative")
			}
			total += v.Weight
			if len(v.Endpoints) == 0 {
				report(vp+".endpoints", "at least one endpoint is required")
			}
			for k, e := range v.Endpoints {
				checkAddrReport(report, fmt.Sprintf("%s.endpoints[%d].address", vp, k), e.Address)
			}
		}
		if len(s.Versions) > 0 && total <= 0 {
			report(path+".versions", "weights must add up to more than 0")
		}
		if mr := s.Mirror; mr != nil {
			if !names[mr.Cluster] {
				report(path+".mirror.cluster", fmt.Sprintf("unknown service %q", mr.Cluster))
			} else if mr.Cluster == s.Name {
				report(path+".mirror.cluster", "a service cannot mirror to itself")
			}
			if mr.Percent <= 0 || mr.Percent > 100 {
				report(path+".mirror.percent", "must be in (0, 100]")
			}
		}
		if cl := s.Cluster; cl != nil {
			if cl.Name != "" || len(cl.Endpoints) > 0 || cl.TLS != nil {
				report(path+".cluster", "name, endpoints and tls are set by the mesh; only resilience knobs belong here")
			}
			if cl.Retry != nil {
				var p problems
				validateRetry(&p, path+".cluster.retry", cl.Retry)
				for _, e := range p {
					fe := e.(*FieldError)
					report(fe.Path, fe.Msg)
				}
			}
		}
	}
}

func (p *problems) addErr(path, msg string) { p.add(path, "%s", msg) }

func checkAddrReport(report func(path, msg string), path, addr string) {
	var p problems
	checkAddr(&p, path, addr)
	for _, e := range p {
		fe := e.(*FieldError)
		report(fe.Path, fe.Msg)
	}
}

func checkMeshName(p *problems, path, v string, required bool) {
	if v == "" {
		if required {
			p.add(path, "is required")
		}
		return
	}
	if !meshName(v, true) {
		p.add(path, "must be letters, digits, '.', '-' or '_', got %q", v)
	}
}

// meshName reports whether v is a valid SPIFFE path segment (upper allows
// upper-case letters) or trust domain (upper false).
func meshName(v string, upper bool) bool {
	if v == "" || v == "." || v == ".." {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		case upper && c >= 'A' && c <= 'Z':
		default:
			return false
		}
	}
	return true
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validHeaderName(h string) bool {
	return h != "" && http.CanonicalHeaderKey(h) != "" && !strings.ContainsAny(h, " \t\r\n:()<>@,;\\\"/[]?={}")
}
