//go:build unix

package upstream

import "syscall"

// alive reports whether an idle connection can still carry a request: the
// upstream has not closed it and sent nothing unasked. It costs one
// non-blocking peek, much cheaper than the failed try it prevents.
func (pc *h1Conn) alive() bool {
	if pc.raw == nil {
		return true
	}
	var buf [1]byte
	n, eof, gone := 0, false, false
	err := pc.raw.Read(func(fd uintptr) bool {
		var rerr error
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
			n = 0 // nothing waiting: the usual case
		case rerr != nil:
			gone = true
		case n == 0:
			eof = true
		}
		return true
	})
	if err != nil || eof || gone {
		return false
	}
	// Bytes on an idle plain connection are an answer nobody asked for. On
	// TLS they may be a session ticket or key update, which tls.Conn reads
	// with the next answer.
	return n == 0 || pc.tls
}
