package listener

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// tlsRecordHandshake is the first byte of every TLS ClientHello.
const tlsRecordHandshake = 0x16

// sniffListener serves TLS and plaintext on one port: it reads the first
// byte of each connection (in its own goroutine, so a silent client never
// stalls Accept) and hands out a *tls.Conn when it starts a TLS record, the
// plain connection otherwise.
type sniffListener struct {
	inner   net.Listener
	conf    *tls.Config
	timeout time.Duration
	onFail  func()
	// onSmuggle counts requests the plaintext side's h1Guard refused.
	onSmuggle func()

	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{}
}

func newSniffListener(inner net.Listener, conf *tls.Config, timeout time.Duration, onFail func()) *sniffListener {
	l := &sniffListener{
		inner:   inner,
		conf:    conf,
		timeout: timeout,
		onFail:  onFail,
		conns:   make(chan net.Conn),
		errs:    make(chan error),
		done:    make(chan struct{}),
		pending: map[net.Conn]struct{}{},
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
	var b [1]byte
	if l.timeout > 0 {
		c.SetReadDeadline(time.Now().Add(l.timeout))
	}
	_, err := c.Read(b[:])
	l.untrack(c)
	if err != nil {
		if l.onFail != nil {
			l.onFail()
		}
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	var out net.Conn = &peekedConn{Conn: c, first: b[0], has: true}
	if b[0] == tlsRecordHandshake {
		out = tls.Server(out, l.conf)
	} else {
		out = newH1Guard(out, l.onSmuggle)
	}
	select {
	case l.conns <- out:
	case <-l.done:
		c.Close()
	}
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
