package listener

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// chunkConn is a net.Conn whose reads return at most n bytes of data.
type chunkConn struct {
	net.Conn
	r *bytes.Reader
	n int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// guardOutput runs in through an h1Guard, read in pieces of n bytes, and
// returns what the reader saw and how many requests were refused.
func guardOutput(t *testing.T, in string, n int) (string, int) {
	t.Helper()
	rejected := 0
	g := newH1Guard(&chunkConn{r: bytes.NewReader([]byte(in)), n: n}, func() { rejected++ })
	out, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), rejected
}

func TestH1Guard(t *testing.T) {
	const (
		get   = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
		smug  = "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		smugW = "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding  chunked\r\n\r\n0\r\n\r\n"
		// Header-looking lines inside bodies and trailers are data: 47 bytes.
		inside = "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"
	)
	if len(inside) != 0x2f {
		t.Fatalf("inside is %d bytes", len(inside))
	}
	tests := []struct {
		name, in, want string
		rejected       int
	}{
		{"plain requests pass untouched", get + get, "", 0},
		{"content-length then transfer-encoding", smug, smugW, 1},
		{"transfer-encoding then content-length, any case",
			"POST / HTTP/1.1\r\ntransfer-ENCODING: chunked\r\nCONTENT-length: 3\r\n\r\n",
			"POST / HTTP/1.1\r\ntransfer-ENCODING: chunked\r\nCONTENT-length  3\r\n\r\n", 1},
		{"pipelined after a content-length body", "POST / HTTP/1.1\r\nContent-Length: 47\r\n\r\n" + inside + smug,
			"POST / HTTP/1.1\r\nContent-Length: 47\r\n\r\n" + inside + smugW, 1},
		{"pipelined after a chunked body with extensions and trailers",
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2f;ext=1\r\n" + inside + "\r\n0\r\nContent-Length: 9\r\n\r\n" + smug,
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2f;ext=1\r\n" + inside + "\r\n0\r\nContent-Length: 9\r\n\r\n" + smugW, 1},
		{"header lines inside a body are not headers", "POST / HTTP/1.1\r\nContent-Length: 47\r\n\r\n" + inside, "", 0},
		{"a folded line is not a header", "POST / HTTP/1.1\r\nContent-Length: 0\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n", "", 0},
		{"HTTP/1.0 is refused too", "POST / HTTP/1.0\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx",
			"POST / HTTP/1.0\r\nContent-Length: 1\r\nTransfer-Encoding  chunked\r\n\r\nx", 1},
		{"an upgrade stops the guard", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n" + smug, "", 0},
		{"CONNECT stops the guard", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n" + smug, "", 0},
		{"HTTP/2 prior knowledge stops the guard", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + smug, "", 0},
		{"a malformed chunk stops the guard", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + smug, "", 0},
		{"an unknown transfer-encoding stops the guard", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n" + smug, "", 0},
		{"leading empty lines are skipped", "\r\n\r\n" + smug, "\r\n\r\n" + smugW, 1},
	}
	for _, tt := range tests {
		want := tt.want
		if want == "" {
			want = tt.in
		}
		for _, n := range []int{1, 2, 7, 4096} {
			got, rej := guardOutput(t, tt.in, n)
			if got != want || rej != tt.rejected {
				t.Errorf("%s (reads of %d bytes): rejected %d (want %d), output\n%q\nwant\n%q", tt.name, n, rej, tt.rejected, got, want)
			}
		}
	}
}

// TestH1GuardOnlyTouchesOneByte: whatever the input, the guard changes at
// most one byte per refused request, and only a colon.
func TestH1GuardOnlyTouchesOneByte(t *testing.T) {
	in := strings.Repeat("POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 3)
	got, rej := guardOutput(t, in, 5)
	diff := 0
	for i := range in {
		if in[i] != got[i] {
			diff++
			if in[i] != ':' || got[i] != ' ' {
				t.Fatalf("byte %d changed from %q to %q", i, in[i], got[i])
			}
		}
	}
	// The first refusal stops the guard: net/http closes the connection.
	if diff != 1 || rej != 1 {
		t.Fatalf("%d bytes changed, %d refusals; want 1 and 1", diff, rej)
	}
}

// BenchmarkH1Guard is the guard's cost per request for a typical browser-
// sized header block (about 400 bytes), read in one piece.
func BenchmarkH1Guard(b *testing.B) {
	req := []byte("GET /api/v1/orders?limit=20 HTTP/1.1\r\nHost: api.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n" +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl\r\n" +
		"Cookie: session=0123456789abcdef; theme=dark\r\nX-Request-Id: 5f2b7c1e9a\r\n\r\n")
	g := newH1Guard(nil, nil)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		g.scan(req)
	}
	if g.state != h1RequestLine {
		b.Fatalf("guard lost the framing: state %d", g.state)
	}
}

// FuzzH1Guard: for any byte stream and any way it is split into reads, the
// guard never panics, only ever turns a colon into a space, does so at
// most once per refusal, and sees the same stream the same way however it
// is split. `go test` runs the seeds; `go test -fuzz H1Guard` explores.
func FuzzH1Guard(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nA: b\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"\r\nPOST / HTTP/1.0\r\ncontent-length: 3\r\n\r\nabcGET / HTTP/1.1\r\nUpgrade: x\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		n := int(step%64) + 1
		outWhole, rejWhole := guardOutput(t, string(in), len(in)+1)
		out, rej := guardOutput(t, string(in), n)
		if out != outWhole || rej != rejWhole {
			t.Fatalf("reads of %d bytes saw the stream differently from one read: %d vs %d refusals", n, rej, rejWhole)
		}
		changed := 0
		for i := range in {
			if in[i] != out[i] {
				changed++
				if in[i] != ':' || out[i] != ' ' {
					t.Fatalf("byte %d changed from %q to %q", i, in[i], out[i])
				}
			}
		}
		if changed != rej {
			t.Fatalf("%d bytes changed for %d refusals", changed, rej)
		}
	})
}
