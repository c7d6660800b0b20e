package config

import "time"

// Route sends matching requests through a filter chain to a cluster.
type Route struct {
	// Name identifies the route in logs and metrics. Default route-N.
	Name string `yaml:"name"`
	// Listeners limits the route to these listeners; empty means all.
	Listeners []string `yaml:"listeners"`
	// Match selects requests.
	Match Match `yaml:"match"`
	// StripPrefix removes this prefix from the path before forwarding.
	StripPrefix string `yaml:"strip_prefix"`
	// RewritePath replaces the path with a regex substitution.
	RewritePath *Rewrite `yaml:"rewrite_path"`
	// Cluster receives the traffic.
	Cluster string `yaml:"cluster"`
	// WeightedClusters split traffic (canary); exclusive with Cluster.
	WeightedClusters []WeightedCluster `yaml:"weighted_clusters"`
	// Versions route API versions to clusters; the first match wins, then Cluster.
	Versions []Version `yaml:"versions"`
	// Filters run after the default filters, in order.
	Filters []Filter `yaml:"filters"`
	// SkipDefaultFilters skips default_filters on this route.
	SkipDefaultFilters bool `yaml:"skip_default_filters"`
	// Timeout bounds the whole upstream exchange including retries. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// Retry overrides the cluster's retry policy.
	Retry *Retry `yaml:"retry"`
	// Mirror copies requests to a shadow cluster.
	Mirror *Mirror `yaml:"mirror"`
	// Redirect answers with a redirect instead of proxying.
	Redirect *Redirect `yaml:"redirect"`
	// Direct answers with a fixed response instead of proxying.
	Direct *Direct `yaml:"direct"`
	// AllowConnect lets CONNECT requests through to this route's cluster.
	// Default false: every other CONNECT is answered 405.
	AllowConnect bool `yaml:"allow_connect"`
}

// Match selects requests. All set parts must match.
type Match struct {
	// Hosts match the Host header: exact, or "*.example.com" for any subdomain.
	Hosts []string `yaml:"hosts"`
	// Path is exact, prefix or regex (one of them).
	Path PathMatch `yaml:"path"`
	// Methods limit the route to these methods.
	Methods []string `yaml:"methods"`
	// Headers must all match.
	Headers []HeaderMatch `yaml:"headers"`
}

// PathMatch matches the URL path.
type PathMatch struct {
	Exact  string `yaml:"exact"`
	Prefix string `yaml:"prefix"`
	Regex  string `yaml:"regex"`
}

// HeaderMatch matches one header.
type HeaderMatch struct {
	// Name of the header.
	Name string `yaml:"name"`
	// Exact value.
	Exact string `yaml:"exact"`
	// Regex the value must match.
	Regex string `yaml:"regex"`
	// Present only checks the header exists (true) or is absent (false).
	Present *bool `yaml:"present"`
}

// Rewrite is a regex substitution on the path.
type Rewrite struct {
	Regex       string `yaml:"regex"`
	Replacement string `yaml:"replacement"`
}

// WeightedCluster is one side of a traffic split.
type WeightedCluster struct {
	Cluster string `yaml:"cluster"`
	Weight  int    `yaml:"weight"`
}

// Version routes one API version to a cluster.
type Version struct {
	// Name of the version, e.g. "v2".
	Name string `yaml:"name"`
	// PathPrefix selects the version by path, e.g. "/v2/".
	PathPrefix string `yaml:"path_prefix"`
	// Header selects the version by header (default Accept-Version) equal to Name.
	Header string `yaml:"header"`
	// Cluster serves this version.
	Cluster string `yaml:"cluster"`
}

// Retry is a retry policy.
type Retry struct {
	// Attempts is the total number of tries (1 = no retry). Default 2.
	Attempts int `yaml:"attempts"`
	// On lists the triggers: connect-failure, reset, 5xx, or status codes ("503").
	On []string `yaml:"on"`
	// PerTryTimeout bounds one try.
	PerTryTimeout time.Duration `yaml:"per_try_timeout"`
	// NonIdempotent allows retrying POST/PATCH (only when the body is replayable).
	NonIdempotent bool `yaml:"non_idempotent"`
	// Backoff is the base backoff between tries (jittered, doubled). Default 25ms.
	Backoff time.Duration `yaml:"backoff"`
}

// Mirror copies a share of requests to a shadow cluster.
type Mirror struct {
	Cluster string  `yaml:"cluster"`
	Percent float64 `yaml:"percent"`
}

// Redirect answers with a redirect.
type Redirect struct {
	URL    string `yaml:"url"`
	Status int    `yaml:"status"`
}

// Direct answers with a fixed response.
type Direct struct {
	Status  int               `yaml:"status"`
	Body    string            `yaml:"body"`
	Headers map[string]string `yaml:"headers"`
}

// Filter is one filter on a route or in default_filters.
type Filter struct {
	// Name identifies the filter; default the plugin file's base name.
	Name string `yaml:"name"`
	// Kind is wasm (default when plugin is set), process, or a builtin name.
	Kind string `yaml:"kind"`
	// Plugin is the path of the .wasm file or process executable, relative
	// to the config file.
	Plugin string `yaml:"plugin"`
	// SHA256 pins the plugin file's hash; a mismatch refuses the config.
	SHA256 string `yaml:"sha256"`
	// Config is handed to the plugin as JSON.
	Config any `yaml:"config"`
	// FailurePolicy is fail_closed (default) or fail_open.
	FailurePolicy string `yaml:"failure_policy"`
	// FailureStatus is the status sent on fail_closed. Default 503.
	FailureStatus int `yaml:"failure_status"`
	// Settings are kind-specific knobs (pool_size, memory_limit_mib, call_timeout...).
	Settings map[string]string `yaml:"settings"`
}
