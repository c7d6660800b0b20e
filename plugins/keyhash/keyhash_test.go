package keyhash

import (
	"errors"
	"strings"
	"testing"
)

func TestHash(t *testing.T) {
	tests := []struct{ key, want string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tt := range tests {
		if got := Hash(tt.key); got != tt.want {
			t.Errorf("Hash(%q) = %s, want %s", tt.key, got, tt.want)
		}
	}
}

func TestDecode(t *testing.T) {
	h := Hash("secret")
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"lower", h, false},
		{"upper", strings.ToUpper(h), false},
		{"prefixed", "sha256:" + h, false},
		{"short", h[:10], true},
		{"not hex", strings.Repeat("z", HexLen), true},
		{"plain key", "secret", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrBadHash) {
					t.Fatalf("Decode(%q) err = %v, want ErrBadHash", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !Equal(got, Sum("secret")) {
				t.Fatalf("Decode(%q) does not equal Sum(secret)", tt.in)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate()
	if a == b || !strings.HasPrefix(a, "wg_") || len(a) != 46 {
		t.Fatalf("Generate gave %q and %q", a, b)
	}
	if Equal(Sum(a), Sum(b)) {
		t.Fatal("different keys hash equal")
	}
}
