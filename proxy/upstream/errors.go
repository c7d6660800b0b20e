package upstream

import (
	"context"
	"errors"
	"net/http"
)

// OverloadedHeader is the response header the proxy sets (value "true") when
// a request is refused because a cluster's circuit breaker is open.
const OverloadedHeader = "x-wasmgate-overloaded"

var (
	// ErrOverloaded is returned when the circuit breaker refuses a request
	// (too many requests in flight and no pending slot left, or the pending
	// wait timed out). Map it to 503 with OverloadedHeader set.
	ErrOverloaded = errors.New("upstream: cluster overloaded")
	// ErrNoHealthyEndpoint is returned when every endpoint of the cluster is
	// unhealthy, ejected or not resolved yet. Map it to 503.
	ErrNoHealthyEndpoint = errors.New("upstream: no healthy endpoint")
	// ErrTimeout is returned when the per-try or the overall timeout expired
	// before the upstream sent response headers. Map it to 504.
	ErrTimeout = errors.New("upstream: timeout")
	// ErrConnect is returned when the connection to the endpoint could not be
	// made (refused, unreachable, connect timeout, TLS handshake). Map it to 502.
	ErrConnect = errors.New("upstream: connect failure")
	// ErrReset is returned when the connection failed after it was made
	// (reset, closed before the response). Map it to 502.
	ErrReset = errors.New("upstream: connection reset")
)

// StatusClientClosed is the status StatusFor returns when the client went
// away before the upstream answered (nginx's 499).
const StatusClientClosed = 499

// StatusFor returns the HTTP status the proxy should answer for an error
// returned by (*Cluster).RoundTrip: 503 for ErrOverloaded and
// ErrNoHealthyEndpoint, 504 for ErrTimeout (and a deadline from the request
// context), 499 when the request context was canceled, and 502 otherwise
// (connect failures, resets, any other transport error).
func StatusFor(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrNoHealthyEndpoint):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return StatusClientClosed
	default:
		return http.StatusBadGateway
	}
}

// IsOverloaded reports whether err means the circuit breaker refused the
// request, in which case the response carries OverloadedHeader: true.
func IsOverloaded(err error) bool { return errors.Is(err, ErrOverloaded) }

// dialError marks an error that happened while connecting (TCP, TLS or QUIC
// handshake), so it can be told apart from a reset on an established
// connection whatever the transport wraps it in.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// isDialError reports whether err came from our dialers.
func isDialError(err error) bool {
	var d *dialError
	return errors.As(err, &d)
}

// isClientFault reports whether err is the client's doing, such as its
// request body failing mid-way (listener.BodyError, or the direct path's
// bodyError). Such a try is not retried and not held against the endpoint.
func isClientFault(err error) bool {
	var cf interface{ ClientFault() bool }
	return errors.As(err, &cf) && cf.ClientFault()
}
