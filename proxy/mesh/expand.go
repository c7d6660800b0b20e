package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// Names of what Expand generates.
const (
	// InboundListener is the listener peers call (mTLS).
	InboundListener = "mesh-inbound"
	// OutboundListener is the loopback listener the app calls.
	OutboundListener = "mesh-outbound"
	// AppCluster is the local application behind the inbound listener.
	AppCluster = "mesh-local-app"
	// InboundRoute is the route from the inbound listener to the app.
	InboundRoute = "mesh-inbound"
)

// ServiceCluster is the cluster name Expand gives a registry service.
func ServiceCluster(service string) string { return "mesh:" + service }

// VersionCluster is the cluster name of one version of a service.
func VersionCluster(service, version string) string { return "mesh:" + service + ":" + version }

// OutboundRoute is the route name of a registry service on the outbound listener.
func OutboundRoute(service string) string { return "mesh-outbound:" + service }

// Registry is the format of mesh.registry_file.
type Registry struct {
	// Services of the registry, same schema as mesh.services.
	Services []config.MeshService `yaml:"services"`
}

// LoadRegistry reads a registry file (unknown fields are errors), applies
// defaults (namespace) and validates it.
func LoadRegistry(path, namespace string) ([]config.MeshService, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mesh: registry: %w", err)
	}
	var reg Registry
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&reg); err != nil {
		return nil, fmt.Errorf("mesh: registry %s: %w", path, err)
	}
	config.ApplyMeshServiceDefaults(reg.Services, namespace)
	var errs []error
	config.ValidateMeshServices(func(p, msg string) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", path, p, msg))
	}, "services", reg.Services)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return reg.Services, nil
}

// WatchFiles lists the files besides the config whose change must trigger a
// config reload (the registry file), resolved against the config's directory.
func WatchFiles(cfg *config.Config) []string {
	if cfg.Mesh == nil || cfg.Mesh.RegistryFile == "" {
		return nil
	}
	return []string{cfg.Resolve(cfg.Mesh.RegistryFile)}
}

// Expand turns the mesh section of a sidecar config into ordinary listeners,
// clusters and routes, appended after the user's own (user routes match
// first), then re-applies defaults and validates the result:
//
//   - inbound: listener mesh-inbound (role inbound, TLS with
//     tls.trust_domain set: client_auth require for strict, optional plus
//     allow_plaintext for permissive), cluster mesh-local-app (the app) and
//     route mesh-inbound (every path) running the mesh-identity filter (when
//     identity_header is set) and then inbound.filters.
//   - outbound: listener mesh-outbound (role outbound, plaintext, loopback);
//     per service a route matched by Host (NAME or NAME.NAMESPACE) to
//     cluster mesh:NAME, or weighted clusters mesh:NAME:VERSION, with the
//     outbound timeout, retry, filters and the service's mirror. Each
//     cluster connects over mTLS with this sidecar's identity (tls.cert_file,
//     key_file, ca_file = bundle) and expects the service's SPIFFE ID
//     (tls.spiffe_id); protocol auto unless the service's cluster knobs say
//     otherwise, so one pooled connection carries many requests.
//
// A config without a mesh section is left unchanged. Expand is not
// idempotent: call it once on a freshly loaded config.
func Expand(cfg *config.Config) error {
	m := cfg.Mesh
	if m == nil {
		return nil
	}
	if cfg.Mode != config.ModeSidecar {
		return fmt.Errorf("mesh: expand: mesh section needs mode sidecar, got %q", cfg.Mode)
	}
	self, err := ServiceID(m.TrustDomain, m.Namespace, m.Service)
	if err != nil {
		return fmt.Errorf("mesh: expand: %w", err)
	}
	certFile, keyFile, bundleFile := absPath(cfg, m.CertFile), absPath(cfg, m.KeyFile), absPath(cfg, m.BundleFile)
	svcs := append([]config.MeshService(nil), m.Services...)
	if m.RegistryFile != "" {
		more, err := LoadRegistry(cfg.Resolve(m.RegistryFile), m.Namespace)
		if err != nil {
			return err
		}
		svcs = append(svcs, more...)
		var errs []error
		config.ValidateMeshServices(func(p, msg string) {
			errs = append(errs, fmt.Errorf("mesh services (static and %s): %s", m.RegistryFile, msg))
		}, "services", svcs)
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}

	var (
		listeners []config.Listener
		clusters  []config.Cluster
		routes    []config.Route
	)
	if in := m.Inbound; in != nil {
		t := &config.ListenerTLS{
			Certs:        []config.Cert{{CertFile: certFile, KeyFile: keyFile}},
			ClientAuth:   "require",
			ClientCAFile: bundleFile,
			TrustDomain:  m.TrustDomain,
		}
		if in.MTLS == config.MeshMTLSPermissive {
			t.ClientAuth = "optional"
			t.AllowPlaintext = true
		}
		listeners = append(listeners, config.Listener{
			Name: InboundListener, Address: in.Address, Role: "inbound", TLS: t, Upstream: AppCluster,
		})
		clusters = append(clusters, config.Cluster{Name: AppCluster, Endpoints: []config.Endpoint{{Address: in.App}}})
		var filters []config.Filter
		if in.IdentityHeader != "" {
			filters = append(filters, config.Filter{
				Name:   "mesh-identity",
				Kind:   IdentityFilterKind,
				Config: map[string]any{"header": in.IdentityHeader, "self": self.String()},
			})
		}
		filters = append(filters, in.Filters...)
		routes = append(routes, config.Route{
			Name:      InboundRoute,
			Listeners: []string{InboundListener},
			Match:     config.Match{Path: config.PathMatch{Prefix: "/"}},
			Cluster:   AppCluster,
			Filters:   filters,
		})
	}
	if out := m.Outbound; out != nil {
		listeners = append(listeners, config.Listener{Name: OutboundListener, Address: out.Address, Role: "outbound"})
		byName := map[string]*config.MeshService{}
		for i := range svcs {
			byName[svcs[i].Name] = &svcs[i]
		}
		for i := range svcs {
			s := &svcs[i]
			expected := s.SPIFFEID
			if expected == "" {
				id, err := ServiceID(m.TrustDomain, s.Namespace, s.Name)
				if err != nil {
					return fmt.Errorf("mesh: expand: service %q: %w", s.Name, err)
				}
				expected = id.String()
			} else if _, err := ParseID(expected); err != nil {
				return fmt.Errorf("mesh: expand: service %q: %w", s.Name, err)
			}
			tlsFor := func() *config.UpstreamTLS {
				return &config.UpstreamTLS{CertFile: certFile, KeyFile: keyFile, CAFile: bundleFile, SPIFFEID: expected}
			}
			r := config.Route{
				Name:      OutboundRoute(s.Name),
				Listeners: []string{OutboundListener},
				Match:     config.Match{Hosts: []string{s.Name, s.Name + "." + s.Namespace}},
				Timeout:   out.Timeout,
				Retry:     out.Retry,
				Filters:   append([]config.Filter(nil), out.Filters...),
			}
			if len(s.Versions) == 0 {
				clusters = append(clusters, serviceCluster(s, ServiceCluster(s.Name), s.Endpoints, tlsFor()))
				r.Cluster = ServiceCluster(s.Name)
			}
			for _, v := range s.Versions {
				name := VersionCluster(s.Name, v.Name)
				clusters = append(clusters, serviceCluster(s, name, v.Endpoints, tlsFor()))
				r.WeightedClusters = append(r.WeightedClusters, config.WeightedCluster{Cluster: name, Weight: v.Weight})
			}
			if mr := s.Mirror; mr != nil {
				target, ok := byName[mr.Cluster]
				if !ok {
					return fmt.Errorf("mesh: expand: service %q mirrors to unknown service %q", s.Name, mr.Cluster)
				}
				r.Mirror = &config.Mirror{Cluster: primaryCluster(target), Percent: mr.Percent}
			}
			routes = append(routes, r)
		}
	}

	if err := checkCollisions(cfg, listeners, clusters, routes); err != nil {
		return err
	}
	cfg.Listeners = append(cfg.Listeners, listeners...)
	cfg.Clusters = append(cfg.Clusters, clusters...)
	cfg.Routes = append(cfg.Routes, routes...)
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("mesh: expanded config: %w", err)
	}
	return nil
}

// absPath resolves p against the config's directory and makes it absolute,
// so the generated listeners and clusters mean the same file whoever
// resolves them again.
func absPath(cfg *config.Config, p string) string {
	r := cfg.Resolve(p)
	if a, err := filepath.Abs(r); err == nil {
		return a
	}
	return r
}

// serviceCluster builds one mesh cluster from the service's knobs.
func serviceCluster(s *config.MeshService, name string, eps []config.Endpoint, t *config.UpstreamTLS) config.Cluster {
	var cl config.Cluster
	if s.Cluster != nil {
		cl = *s.Cluster
	}
	cl.Name = name
	cl.Endpoints = append([]config.Endpoint(nil), eps...)
	cl.TLS = t
	if cl.Protocol == "" {
		// The app's protocol end to end: HTTP/1 stays HTTP/1.1 over pooled
		// mTLS connections (as Istio does by default; with Go on both ends
		// it costs less per request than HTTP/2 and WebSockets keep
		// working), gRPC and other HTTP/2 traffic goes over h2.
		cl.Protocol = "auto"
	}
	return cl
}

// primaryCluster is where mirrored traffic for s goes: its cluster, or its
// heaviest version.
func primaryCluster(s *config.MeshService) string {
	if len(s.Versions) == 0 {
		return ServiceCluster(s.Name)
	}
	best := s.Versions[0]
	for _, v := range s.Versions[1:] {
		if v.Weight > best.Weight {
			best = v
		}
	}
	return VersionCluster(s.Name, best.Name)
}

func checkCollisions(cfg *config.Config, ls []config.Listener, cs []config.Cluster, rs []config.Route) error {
	var errs []error
	names := map[string]bool{}
	for _, l := range cfg.Listeners {
		names[l.Name] = true
	}
	for _, l := range ls {
		if names[l.Name] {
			errs = append(errs, fmt.Errorf("mesh: listener name %q is reserved for the mesh", l.Name))
		}
	}
	names = map[string]bool{}
	for _, c := range cfg.Clusters {
		names[c.Name] = true
	}
	for _, c := range cs {
		if names[c.Name] {
			errs = append(errs, fmt.Errorf("mesh: cluster name %q is reserved for the mesh", c.Name))
		}
	}
	names = map[string]bool{}
	for _, r := range cfg.Routes {
		names[r.Name] = true
	}
	for _, r := range rs {
		if names[r.Name] {
			errs = append(errs, fmt.Errorf("mesh: route name %q is reserved for the mesh", r.Name))
		}
	}
	return errors.Join(errs...)
}
