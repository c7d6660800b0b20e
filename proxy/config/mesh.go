package config

import "time"

// Mesh configures sidecar identity. It is owned by proxy/mesh.
type Mesh struct {
	// TrustDomain of the mesh, e.g. "wasmgate.local".
	TrustDomain string `yaml:"trust_domain"`
	// Service is this sidecar's service name.
	Service string `yaml:"service"`
	// Namespace of the service. Default "default".
	Namespace string `yaml:"namespace"`
	// CertFile, KeyFile and BundleFile are this service's identity; they are
	// reloaded when rotated on disk.
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	BundleFile string `yaml:"bundle_file"`
	// Inbound is the port peers call.
	Inbound *MeshInbound `yaml:"inbound"`
	// Outbound is the loopback port the app calls.
	Outbound *MeshOutbound `yaml:"outbound"`
	// Services is the static service registry.
	Services []MeshService `yaml:"services"`
	// RegistryFile is a YAML file with a top-level "services:" list (same
	// schema as services), merged with the static services; it is read on
	// every config (re)load, so a change to it applies on reload.
	RegistryFile string `yaml:"registry_file"`
}

// MeshInbound is the sidecar's inbound listener.
type MeshInbound struct {
	// Address to bind.
	Address string `yaml:"address"`
	// MTLS is strict (default) or permissive.
	MTLS string `yaml:"mtls"`
	// App is the local application's address.
	App string `yaml:"app"`
	// IdentityHeader, when set, carries the verified peer SPIFFE ID to the
	// app; the header is removed from every incoming request first. Named
	// x-forwarded-client-cert, it uses the XFCC form By=<own id>;URI=<peer id>.
	IdentityHeader string `yaml:"identity_header"`
	// Filters run on inbound requests (e.g. authz).
	Filters []Filter `yaml:"filters"`
}

// MeshOutbound is the sidecar's outbound listener.
type MeshOutbound struct {
	// Address to bind; must be loopback.
	Address string `yaml:"address"`
	// Timeout per request. Default 15s.
	Timeout time.Duration `yaml:"timeout"`
	// Retry for calls to peers.
	Retry *Retry `yaml:"retry"`
	// Filters run on outbound requests.
	Filters []Filter `yaml:"filters"`
}

// MeshService is one service in the registry.
type MeshService struct {
	// Name the app uses as the host: http://NAME/...
	Name string `yaml:"name"`
	// Namespace of the service. Default the sidecar's mesh.namespace.
	Namespace string `yaml:"namespace"`
	// SPIFFEID expected from the peer; default derived from name and namespace.
	SPIFFEID string `yaml:"spiffe_id"`
	// Endpoints are the peer sidecars' inbound addresses.
	Endpoints []Endpoint `yaml:"endpoints"`
	// Versions split traffic between versions of the service (canary).
	Versions []MeshServiceVersion `yaml:"versions"`
	// Mirror copies a share of traffic to another service of the registry
	// (mirror.cluster names that service).
	Mirror *Mirror `yaml:"mirror"`
	// Cluster carries resilience knobs (breaker, outlier, retry budget,
	// protocol...); name, endpoints and tls are filled in by the mesh.
	Cluster *Cluster `yaml:"cluster"`
}

// MeshServiceVersion is one version of a service with a weight.
type MeshServiceVersion struct {
	// Name of the version, e.g. "v2"; its cluster is "mesh:SERVICE:NAME".
	// Weight is its share of traffic; Endpoints its peer sidecars.
	Name      string     `yaml:"name"`
	Weight    int        `yaml:"weight"`
	Endpoints []Endpoint `yaml:"endpoints"`
}
