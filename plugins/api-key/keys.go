package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/wasmgate/wasmgate/plugins/keyhash"

	"github.com/wasmgate/wasmgate/sdk"
)

// Defaults of the api-key config.
const (
	defaultHeader         = "x-api-key"
	defaultConsumerHeader = "x-consumer"
)

// Config is the api-key plugin config (JSON; YAML in the proxy config).
type Config struct {
	// Keys are the accepted keys, stored as SHA-256 hex hashes
	// (`wasmgate hash-key` prints one). Required.
	Keys []KeyConfig `json:"keys"`
	// Header is the request header carrying the key. Default "x-api-key".
	// Set "-" to read only from Query.
	Header string `json:"header"`
	// Query is a query parameter carrying the key, tried after Header.
	// Default none.
	Query string `json:"query"`
	// ConsumerHeader is set upstream to the consumer's name. Default
	// "x-consumer"; "-" disables it. A client-sent header of that name is
	// always removed.
	ConsumerHeader string `json:"consumer_header"`
	// TierHeader, when set, is set upstream to the consumer's tier.
	TierHeader string `json:"tier_header"`
	// StripKey removes the key (header or query parameter) before the
	// request goes upstream. Default true.
	StripKey *bool `json:"strip_key"`
	// Optional lets requests that carry no key through anonymously (a
	// present but unknown key is still refused); pair it with authz.
	Optional bool `json:"optional"`
}

// KeyConfig is one accepted key.
type KeyConfig struct {
	// Hash is the SHA-256 hex of the key (64 hex digits, optional
	// "sha256:" prefix). Plain keys are refused.
	Hash string `json:"hash"`
	// Consumer names who owns the key. Required.
	Consumer string `json:"consumer"`
	// Tier is an optional plan name (e.g. "gold"), used by rate-limit.
	Tier string `json:"tier"`
}

// entry is one compiled key.
type entry struct {
	sum      [sha256.Size]byte
	consumer string
	tier     string
}

// keyring is a compiled config.
type keyring struct {
	entries        []entry
	header         string
	query          string
	consumerHeader string
	tierHeader     string
	stripKey       bool
	optional       bool
}

// parseConfig decodes and validates a config, joining every problem with
// its field path.
func parseConfig(data []byte) (*keyring, error) {
	var c Config
	if err := sdk.DecodeConfig(data, &c); err != nil {
		return nil, fmt.Errorf("api-key: %w", err)
	}
	k, err := c.compile()
	if err != nil {
		return nil, fmt.Errorf("api-key: config: %w", err)
	}
	return k, nil
}

func (c *Config) compile() (*keyring, error) {
	var errs []error
	k := &keyring{
		header:         c.Header,
		query:          c.Query,
		consumerHeader: c.ConsumerHeader,
		tierHeader:     c.TierHeader,
		stripKey:       c.StripKey == nil || *c.StripKey,
		optional:       c.Optional,
	}
	if k.header == "" {
		k.header = defaultHeader
	}
	if k.header == "-" {
		k.header = ""
	}
	if k.consumerHeader == "" {
		k.consumerHeader = defaultConsumerHeader
	}
	if k.consumerHeader == "-" {
		k.consumerHeader = ""
	}
	if k.header == "" && k.query == "" {
		errs = append(errs, errors.New(`header: "-" needs query to be set`))
	}
	for field, h := range map[string]string{"header": k.header, "consumer_header": k.consumerHeader, "tier_header": k.tierHeader} {
		if h != "" && !validHeaderName(h) {
			errs = append(errs, fmt.Errorf("%s: invalid header name %q", field, h))
		}
	}
	if len(c.Keys) == 0 {
		errs = append(errs, errors.New("keys: at least one key is required"))
	}
	seen := map[[sha256.Size]byte]int{}
	for i, kc := range c.Keys {
		sum, err := keyhash.Decode(kc.Hash)
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d].hash: %w (store `wasmgate hash-key <key>` output, never the key)", i, err))
			continue
		}
		if j, dup := seen[sum]; dup {
			errs = append(errs, fmt.Errorf("keys[%d].hash: same key as keys[%d]", i, j))
			continue
		}
		seen[sum] = i
		if kc.Consumer == "" || !headerSafe(kc.Consumer) || !headerSafe(kc.Tier) {
			errs = append(errs, fmt.Errorf("keys[%d]: consumer is required, and consumer and tier must be printable", i))
			continue
		}
		k.entries = append(k.entries, entry{sum: sum, consumer: kc.Consumer, tier: kc.Tier})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	k.header = textproto.CanonicalMIMEHeaderKey(k.header)
	return k, nil
}

// lookup finds the entry for a presented key. It hashes the key and
// compares the hash with every entry in constant time, so neither the
// position nor the existence of a match shows in the timing.
func (k *keyring) lookup(presented string) (*entry, bool) {
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range k.entries {
		eq := subtle.ConstantTimeCompare(sum[:], k.entries[i].sum[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil, false
	}
	return &k.entries[found], true
}

// extract finds the presented key: the header first, then the query
// parameter. from is "header", "query" or "" when there is none.
// rawQuery is only called when a query parameter is configured.
func (k *keyring) extract(header func(string) string, rawQuery func() string) (key, from string) {
	if k.header != "" {
		if v := strings.TrimSpace(header(k.header)); v != "" {
			return v, "header"
		}
	}
	if k.query != "" {
		if q, _ := url.ParseQuery(rawQuery()); q.Get(k.query) != "" {
			return q.Get(k.query), "query"
		}
	}
	return "", ""
}

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

func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
