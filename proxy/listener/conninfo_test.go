package listener

import (
	"context"
	"crypto/tls"
	"testing"
)

// TestPeerOfOncePerConnection: the peer of a connection is derived on its
// first request and reused after; another connection derives its own, and
// a context from elsewhere derives every time.
func TestPeerOfOncePerConnection(t *testing.T) {
	calls := 0
	derive := func(cs *tls.ConnectionState) Peer {
		calls++
		return Peer{ID: "spiffe://example.org/" + cs.ServerName, Subject: "CN=" + cs.ServerName}
	}
	a, b := &tls.ConnectionState{ServerName: "a"}, &tls.ConnectionState{ServerName: "b"}
	ctxA := withConnState(context.Background(), &connState{})
	ctxB := withConnState(context.Background(), &connState{})
	for range 3 {
		if p := PeerOf(ctxA, a, derive); p.ID != "spiffe://example.org/a" || p.Subject != "CN=a" {
			t.Fatalf("connection a: %+v", p)
		}
	}
	if p := PeerOf(ctxB, b, derive); p.ID != "spiffe://example.org/b" {
		t.Fatalf("connection b: %+v", p)
	}
	if calls != 2 {
		t.Fatalf("derive ran %d times for two connections, want 2", calls)
	}
	PeerOf(context.Background(), a, derive)
	PeerOf(context.Background(), a, derive)
	if calls != 4 {
		t.Fatalf("without a listener context derive ran %d times in total, want 4", calls)
	}
}
