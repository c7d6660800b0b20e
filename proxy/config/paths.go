package config

// Paths controls how request paths are normalised before routing; the
// normalised path is what routes match and what the upstream receives.
type Paths struct {
	// Action is normalize (default: rewrite the path to its normal form) or
	// reject (answer 400 to a path that is not already in normal form:
	// dot segments, repeated slashes, decoded slashes).
	Action string `yaml:"action"`
	// MergeSlashes merges runs of '/' into one, as nginx does. Default true.
	MergeSlashes *bool `yaml:"merge_slashes"`
	// EscapedSlashes is what %2F, %5C and a raw backslash become: decode
	// (default: path separators, as nginx matches them), keep (left encoded,
	// not separators; only safe if the upstream does not decode them), or
	// reject (400). Modelled on Envoy's path_with_escaped_slashes_action.
	EscapedSlashes string `yaml:"escaped_slashes"`
}

// Path normalisation actions and escaped-slash policies.
const (
	PathNormalize = "normalize"
	PathReject    = "reject"
	SlashesDecode = "decode"
	SlashesKeep   = "keep"
	SlashesReject = "reject"
)

func (p *Paths) applyDefaults() {
	if p.Action == "" {
		p.Action = PathNormalize
	}
	if p.MergeSlashes == nil {
		t := true
		p.MergeSlashes = &t
	}
	if p.EscapedSlashes == "" {
		p.EscapedSlashes = SlashesDecode
	}
}

func (p *Paths) validate(pr *problems) {
	switch p.Action {
	case PathNormalize, PathReject:
	default:
		pr.add("paths.action", "must be normalize or reject, got %q", p.Action)
	}
	switch p.EscapedSlashes {
	case SlashesDecode, SlashesKeep, SlashesReject:
	default:
		pr.add("paths.escaped_slashes", "must be decode, keep or reject, got %q", p.EscapedSlashes)
	}
}
