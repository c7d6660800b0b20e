package filter

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// closeCount is a body that counts its Close calls.
type closeCount struct {
	io.Reader
	closed int
}

func (c *closeCount) Close() error { c.closed++; return nil }

// TestBufferBodyClosesTheUpstreamBody: the buffered copy replaces the
// upstream body, so BufferBody must close it (the upstream call ends only
// then); an over-cap body keeps streaming and is closed by whoever reads it.
func TestBufferBodyClosesTheUpstreamBody(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       string
		max        int64
		wantClosed int
		wantErr    error
	}{
		{"fits", "hello", 16, 1, nil},
		{"empty", "", 16, 1, nil},
		{"over the cap", strings.Repeat("x", 32), 16, 0, ErrBodyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &closeCount{Reader: strings.NewReader(tc.body)}
			r := &Response{Body: up}
			b, err := r.BufferBody(tc.max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if up.closed != tc.wantClosed {
				t.Fatalf("upstream body closed %d times, want %d", up.closed, tc.wantClosed)
			}
			if err == nil && string(b) != tc.body {
				t.Fatalf("buffered %q", b)
			}
			rest, _ := io.ReadAll(r.Body)
			if string(rest) != tc.body {
				t.Fatalf("body after buffering reads %q", rest)
			}
			if err != nil {
				_ = r.Body.Close()
				if up.closed != 1 {
					t.Fatalf("closing the rejoined body closed the upstream %d times", up.closed)
				}
			}
		})
	}
	// No body at all: nothing to close, no panic.
	if _, err := (&Response{}).BufferBody(16); err != nil {
		t.Fatal(err)
	}
}
