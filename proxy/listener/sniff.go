package listener

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// tlsRecordHandshake is the first byte of every TLS ClientHello.
const tlsRecordHandshake = 0x16

// sniffListener accepts TCP connections and prepares each one in its own
// goroutine (so a silent or slow client never stalls Accept) before
// net/http sees it:
//
//   - With plaintext allowed it reads the first byte: a TLS record starts a
//     TLS connection, anything else is plaintext HTTP.
//   - TLS connections are handshaken here, bounded by timeout. HTTP/2 ones
//     are handed out as the *tls.Conn net/http expects; HTTP/1 ones, like
//     plaintext ones, inside an h1Guard, which net/http then serves as a
//     plain connection (the listener restores r.TLS from the connection
//     context, see connContext).
//
// Doing the TLS handshake here rather than in net/http is what lets the
// HTTP/1 request-smuggling guard see decrypted bytes.
type sniffListener struct {
	inner     net.Listener
	conf      *tls.Config
	timeout   time.Duration
	plaintext bool // accept plaintext beside TLS
	onFail    func()
	// onSmuggle counts requests an h1Guard refused.
	onSmuggle func()
	// onHandshakeErr reports failed TLS handshakes.
	onHandshakeErr func(remote net.Addr, err error)

	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{}
}

func newSniffListener(inner net.Listener, conf *tls.Config, timeout time.Duration, plaintext bool, onFail func()) *sniffListener {
	l := &sniffListener{
		inner:     inner,
		conf:      conf,
		timeout:   timeout,
		plaintext: plaintext,
		onFail:    onFail,
		conns:     make(chan net.Conn),
		errs:      make(chan error),
		done:      make(chan struct{}),
		pending:   map[net.Conn]struct{}{},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *sniffListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				continue
			}
			return
		}
		if !l.track(c) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go l.sniff(c)
	}
}

// track records a connection being sniffed; false once the listener closed.
func (l *sniffListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *sniffListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

func (l *sniffListener) sniff(c net.Conn) {
	defer l.wg.Done()
	if l.timeout > 0 {
		c.SetDeadline(time.Now().Add(l.timeout))
	}
	var out net.Conn = c
	isTLS := !l.plaintext
	if l.plaintext {
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			if l.onFail != nil {
				l.onFail()
			}
			l.untrack(c)
			c.Close()
			return
		}
		out = &peekedConn{Conn: c, first: b[0], has: true}
		isTLS = b[0] == tlsRecordHandshake
	}
	if isTLS {
		tc, ok := l.handshake(out)
		if !ok {
			l.untrack(c)
			c.Close()
			return
		}
		out = tc
		if tc.ConnectionState().NegotiatedProtocol != "h2" {
			out = newH1Guard(tc, l.onSmuggle)
		}
	} else {
		out = newH1Guard(out, l.onSmuggle)
	}
	c.SetDeadline(time.Time{})
	// From here net/http owns the connection: Close must not close it.
	l.untrack(c)
	select {
	case l.conns <- out:
	case <-l.done:
		c.Close()
	}
}

// handshake runs the TLS handshake on c. A client that spoke plain HTTP to
// the TLS port gets the same one-line 400 net/http would send it.
func (l *sniffListener) handshake(c net.Conn) (*tls.Conn, bool) {
	tc := tls.Server(c, l.conf)
	err := tc.Handshake() // bounded by the deadline sniff set
	if err == nil {
		return tc, true
	}
	var re tls.RecordHeaderError
	if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
	}
	if l.onHandshakeErr != nil {
		l.onHandshakeErr(c.RemoteAddr(), err)
	}
	return nil, false
}

// looksLikeHTTP reports whether a would-be TLS record header is the start
// of an HTTP/1 request line.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}

// Accept returns the next sniffed connection.
func (l *sniffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, closes connections still being sniffed and waits
// for the listener's goroutines.
func (l *sniffListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		for c := range l.pending {
			c.Close()
		}
		l.pending = nil
		l.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

// Addr returns the listener's address.
func (l *sniffListener) Addr() net.Addr { return l.inner.Addr() }

// peekedConn replays the sniffed first byte.
type peekedConn struct {
	net.Conn
	first byte
	has   bool
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.has && len(p) > 0 {
		p[0] = c.first
		c.has = false
		return 1, nil
	}
	return c.Conn.Read(p)
}
