// Package keyhash hashes API keys the way the api-key plugin stores them:
// lowercase hex of SHA-256 over the key's bytes. `wasmgate hash-key` prints
// Hash(key) so operators never put a plain key into a config file, and the
// plugin compares hashes in constant time.
package keyhash

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// HexLen is the length of a hash as printed by Hash.
const HexLen = sha256.Size * 2

// ErrBadHash is returned by Decode for a string that is not a SHA-256 hex hash.
var ErrBadHash = errors.New("keyhash: not a sha256 hex hash (64 hex digits)")

// Hash returns the lowercase hex SHA-256 of key.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Sum returns the raw SHA-256 of key.
func Sum(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

// Decode parses a hash printed by Hash (hex, either case, an optional
// "sha256:" prefix) into its raw bytes.
func Decode(s string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	s = strings.TrimPrefix(strings.TrimSpace(s), "sha256:")
	if len(s) != HexLen {
		return out, fmt.Errorf("%w: got %d characters", ErrBadHash, len(s))
	}
	if _, err := hex.Decode(out[:], []byte(s)); err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadHash, err)
	}
	return out, nil
}

// Equal compares two raw hashes in constant time.
func Equal(a, b [sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Generate returns a new random API key (32 bytes, base64url without
// padding, prefixed "wg_") for demos and operators who want one.
func Generate() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("keyhash: generate key: %w", err)
	}
	return "wg_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
