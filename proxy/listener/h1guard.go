package listener

import (
	"bytes"
	"net"
	"strconv"
)

// Request smuggling guard for HTTP/1.
//
// A request with both Content-Length and Transfer-Encoding can be framed
// two ways, and a chain of proxies that disagree about which one wins is
// how requests are smuggled (RFC 9112 section 11.2). net/http picks chunked
// and drops Content-Length, which is safe for the hop it forwards, but
// operators expect what Envoy and nginx do: a 400 and a closed connection,
// so the conflict is visible and never reaches an upstream. net/http gives
// no hook before it deletes the header, so h1Guard watches the request
// bytes as they are read: it follows HTTP/1 framing (request line, header
// block, Content-Length or chunked body, trailers, pipelining) and, when the
// second of the two headers starts in a header block, overwrites that
// header's colon with a space before net/http sees the bytes. net/http then
// refuses the line as malformed with 400 and closes the connection, and the
// handler never runs.
//
// The guard only ever touches that one byte. Whenever the stream stops
// being plain HTTP/1 it can follow for sure — CONNECT, Upgrade (WebSocket,
// h2c), HTTP/2 prior knowledge, a Transfer-Encoding other than chunked, a
// malformed chunk or Content-Length, a header block far past any sane size
// — it stops watching for the rest of the connection; net/http rejects the
// malformed cases itself.

// h1State is where in the HTTP/1 stream the next byte belongs.
type h1State uint8

const (
	h1RequestLine h1State = iota
	h1Headers
	h1Body        // Content-Length body: remaining bytes to skip
	h1ChunkSize   // chunk-size [; ext] CRLF
	h1ChunkData   // remaining bytes of a chunk
	h1ChunkCR     // the CR after chunk data
	h1ChunkLF     // the LF after chunk data
	h1Trailers    // trailer lines until an empty line
	h1Passthrough // stopped watching
)

// hdrKind is what the current header line is, as far as framing goes.
type hdrKind uint8

const (
	hdrOther hdrKind = iota
	hdrContentLength
	hdrTransferEncoding
	hdrUpgrade
)

const (
	// maxGuardBlock bounds a header block the guard follows; net/http
	// answers 431 long before (MaxHeaderBytes).
	maxGuardBlock = 1 << 20
	// guardNameLen is enough for the longest name we look for.
	guardNameLen = len("transfer-encoding")
	guardValLen  = 24
)

// h1Guard wraps a plaintext HTTP/1 connection; see the comment above.
type h1Guard struct {
	net.Conn
	onReject func()

	state h1State

	// The current line.
	lineLen  int  // bytes so far, LF excluded
	nonEmpty bool // has a byte other than CR
	head     [8]byte
	headLen  int
	tail     [8]byte
	name     [guardNameLen]byte
	nameLen  int
	nameBad  bool // longer than guardNameLen or not yet a name we look for
	colon    bool // past the colon of a header line
	fold     bool // a continuation line (obs-fold)
	kind     hdrKind
	val      [guardValLen]byte
	valLen   int
	valLong  bool

	// The current request.
	blockLen         int
	http10           bool
	sawCL, sawTE     bool
	clBad, teChunked bool
	cl               int64
	upgrade          bool
	rejected         bool

	remaining   uint64 // of a Content-Length body or a chunk
	chunkDigits int
	chunkExt    bool
}

func newH1Guard(c net.Conn, onReject func()) *h1Guard {
	return &h1Guard{Conn: c, onReject: onReject}
}

// Read reads from the connection and follows what it read.
func (g *h1Guard) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if n > 0 && g.state != h1Passthrough {
		g.scan(p[:n])
	}
	return n, err
}

// scan advances the framing over b, rewriting at most one byte of it.
func (g *h1Guard) scan(b []byte) {
	for i := 0; i < len(b); i++ {
		switch g.state {
		case h1Passthrough:
			return
		case h1Body, h1ChunkData:
			n := uint64(len(b) - i)
			if n > g.remaining {
				n = g.remaining
			}
			g.remaining -= n
			i += int(n) - 1
			if g.remaining == 0 {
				if g.state == h1Body {
					g.startRequest()
				} else {
					g.state = h1ChunkCR
				}
			}
		case h1ChunkCR:
			if b[i] != '\r' {
				g.stop()
				return
			}
			g.state = h1ChunkLF
		case h1ChunkLF:
			if b[i] != '\n' {
				g.stop()
				return
			}
			g.state = h1ChunkSize
			g.remaining, g.chunkDigits, g.chunkExt = 0, 0, false
		case h1ChunkSize:
			g.chunkSizeByte(b[i])
		default: // request line, headers, trailers: a line at a time
			end := len(b)
			j := bytes.IndexByte(b[i:], '\n')
			if j >= 0 {
				end = i + j
			}
			g.blockLen += end - i + 1
			if g.blockLen > maxGuardBlock {
				g.stop()
				return
			}
			g.lineSeg(b, i, end)
			if j < 0 {
				return
			}
			i = end // the loop steps over the LF
			g.endLine()
		}
	}
}

// stop gives up following the connection.
func (g *h1Guard) stop() { g.state = h1Passthrough }

// startRequest expects the next request line.
func (g *h1Guard) startRequest() {
	g.state = h1RequestLine
	g.resetLine()
	g.blockLen, g.http10 = 0, false
	g.sawCL, g.sawTE, g.clBad, g.teChunked, g.cl = false, false, false, false, 0
	g.upgrade, g.rejected = false, false
}

func (g *h1Guard) resetLine() {
	g.lineLen, g.nonEmpty, g.headLen = 0, false, 0
	g.nameLen, g.nameBad, g.colon, g.fold = 0, false, false, false
	g.kind, g.valLen, g.valLong = hdrOther, 0, false
}

// lineSeg handles b[from:to], a piece of the current request, header or
// trailer line without its LF (a line may arrive over several reads). It
// works on whole pieces (IndexByte, no per-byte calls): most header bytes
// are values nobody here needs. b[from:to] may get one byte rewritten (see
// h1Guard).
func (g *h1Guard) lineSeg(b []byte, from, to int) {
	seg := b[from:to]
	if len(seg) == 0 {
		return
	}
	first := g.lineLen == 0
	// textproto takes "\r\n" and "\n" alike: CRs do not make a line non-empty.
	if !g.nonEmpty && len(bytes.Trim(seg, "\r")) > 0 {
		g.nonEmpty = true
	}
	g.lineLen += len(seg)
	switch g.state {
	case h1RequestLine:
		for i := 0; i < len(seg) && g.headLen < len(g.head); i++ {
			g.head[g.headLen] = seg[i]
			g.headLen++
		}
		// Keep the line's last 8 bytes (CR excluded) for the version.
		t := bytes.TrimRight(seg, "\r")
		if len(t) >= len(g.tail) {
			copy(g.tail[:], t[len(t)-len(g.tail):])
		} else if len(t) > 0 {
			copy(g.tail[:], g.tail[len(t):])
			copy(g.tail[len(g.tail)-len(t):], t)
		}
		return
	case h1Trailers:
		return
	}
	// A header line.
	if first && (seg[0] == ' ' || seg[0] == '\t') {
		g.fold = true
	}
	if g.fold {
		return
	}
	if !g.colon {
		k := bytes.IndexByte(seg, ':')
		name := seg
		if k >= 0 {
			name = seg[:k]
		}
		if g.nameLen+len(name) > len(g.name) {
			g.nameBad = true
		} else {
			for _, c := range name {
				g.name[g.nameLen] = lower(c)
				g.nameLen++
			}
		}
		if k < 0 {
			return
		}
		g.colon = true
		g.headerName(b, from+k)
		seg = seg[k+1:]
	}
	if g.kind != hdrContentLength && g.kind != hdrTransferEncoding {
		return
	}
	for _, c := range seg {
		switch {
		case c == '\r':
		case g.valLen == 0 && (c == ' ' || c == '\t'): // leading whitespace
		case g.valLen < len(g.val):
			g.val[g.valLen] = lower(c)
			g.valLen++
		default:
			g.valLong = true
		}
	}
}

// headerName classifies the header whose colon is b[i] and breaks the line
// when it completes a Content-Length + Transfer-Encoding pair.
func (g *h1Guard) headerName(b []byte, i int) {
	if g.nameBad {
		return
	}
	switch string(g.name[:g.nameLen]) {
	case "content-length":
		g.kind = hdrContentLength
	case "transfer-encoding":
		g.kind = hdrTransferEncoding
	case "upgrade":
		g.kind = hdrUpgrade
		g.upgrade = true
		return
	default:
		return
	}
	if (g.kind == hdrContentLength && g.sawTE) || (g.kind == hdrTransferEncoding && g.sawCL) {
		b[i] = ' ' // "Content-Length 5": no colon, net/http answers 400
		g.rejected = true
		if g.onReject != nil {
			g.onReject()
		}
	}
	if g.kind == hdrContentLength {
		g.sawCL = true
	} else {
		g.sawTE = true
	}
}

// endLine finishes the current line.
func (g *h1Guard) endLine() {
	switch g.state {
	case h1RequestLine:
		if !g.nonEmpty {
			g.blockLen = 0 // an empty line before a request is skipped
			g.resetLine()
			return
		}
		head := string(g.head[:g.headLen])
		if hasPrefix(head, "CONNECT ") || hasPrefix(head, "PRI ") {
			g.stop() // a tunnel or HTTP/2 with prior knowledge
			return
		}
		g.http10 = g.lineLen >= len(g.tail) && string(g.tail[:]) == "HTTP/1.0"
		g.state = h1Headers
		g.resetLine()
	case h1Trailers:
		if !g.nonEmpty {
			g.startRequest()
			return
		}
		g.resetLine()
	case h1Headers:
		if !g.nonEmpty {
			g.endHeaders()
			return
		}
		if g.colon {
			g.headerValue()
		}
		g.resetLine()
	}
}

// headerValue records the value of a Content-Length or Transfer-Encoding line.
func (g *h1Guard) headerValue() {
	v := trimRight(g.val[:g.valLen])
	switch g.kind {
	case hdrContentLength:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n < 0 || g.valLong || (g.cl != 0 && g.cl != n) {
			g.clBad = true // net/http refuses it too
		}
		g.cl = n
	case hdrTransferEncoding:
		// A second Transfer-Encoding line is refused by net/http.
		g.teChunked = !g.teChunked && !g.valLong && string(v) == "chunked"
	}
}

// endHeaders decides how the body is framed.
func (g *h1Guard) endHeaders() {
	switch {
	case g.rejected, g.upgrade:
		g.stop()
	case g.sawTE && !g.http10: // net/http ignores Transfer-Encoding in HTTP/1.0
		if !g.teChunked {
			g.stop() // net/http answers 501
			return
		}
		g.state = h1ChunkSize
		g.remaining, g.chunkDigits, g.chunkExt = 0, 0, false
	case g.sawCL:
		if g.clBad {
			g.stop()
			return
		}
		if g.cl == 0 {
			g.startRequest()
			return
		}
		g.state, g.remaining = h1Body, uint64(g.cl)
	default:
		g.startRequest()
	}
}

// chunkSizeByte handles one byte of a chunk-size line.
func (g *h1Guard) chunkSizeByte(c byte) {
	switch {
	case c == '\n':
		switch {
		case g.chunkDigits == 0:
			g.stop()
		case g.remaining == 0:
			g.state = h1Trailers // last chunk
			g.resetLine()
		default:
			g.state = h1ChunkData
		}
	case g.chunkExt || c == '\r':
	case c == ';' || c == ' ' || c == '\t':
		g.chunkExt = true
	default:
		d, ok := hexVal(c)
		if !ok || g.chunkDigits == 16 {
			g.stop()
			return
		}
		g.remaining = g.remaining<<4 | uint64(d)
		g.chunkDigits++
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func trimRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// guardListener wraps every accepted connection in an h1Guard.
type guardListener struct {
	net.Listener
	onReject func()
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newH1Guard(c, l.onReject), nil
}
