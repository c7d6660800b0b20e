//go:build !unix

package upstream

// alive cannot peek on this platform; a stale connection is found by the
// failed write or read instead, and idempotent requests are sent again.
func (pc *h1Conn) alive() bool { return true }
