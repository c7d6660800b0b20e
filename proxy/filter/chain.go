package filter

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Entry is one built filter in a chain with its failure policy.
type Entry struct {
	Name          string
	Kind          string
	Filter        Filter
	FailurePolicy FailurePolicy
	FailureStatus int
}

// Observer receives one call per filter run; proxy/observe implements it.
type Observer interface {
	FilterDone(filter, kind, action string, took time.Duration)
}

// Chain is an ordered list of filters. It is immutable once built and
// shared by all requests of a snapshot.
type Chain struct {
	Entries  []Entry
	Log      *zap.Logger
	Observer Observer
}

// Empty reports whether the chain has no filters.
func (c *Chain) Empty() bool { return c == nil || len(c.Entries) == 0 }

// RunRequest runs the request phase. It returns the number of filters that
// continued (their response phase must run) and whether the request goes on
// to the upstream. When it returns next=false, x.Response holds the answer.
func (c *Chain) RunRequest(ctx context.Context, x *Exchange) (ran int, next bool) {
	if c.Empty() {
		return 0, true
	}
	for i := range c.Entries {
		e := &c.Entries[i]
		start := time.Now()
		cont, err := c.safeRequest(ctx, e, x)
		took := time.Since(start)
		switch {
		case err != nil && e.FailurePolicy == FailOpen:
			c.record(x, e, "fail_open", 0, took)
			c.logFailure(e, x, err)
			// A failed filter's response phase is skipped: it did not run.
			continue
		case err != nil:
			status := e.FailureStatus
			if status == 0 {
				status = http.StatusServiceUnavailable
			}
			c.logFailure(e, x, err)
			c.record(x, e, "error", status, took)
			x.Response = &Response{StatusCode: status, Header: make(http.Header)}
			x.Response.Header.Set("Content-Type", "application/json")
			x.Response.SetBody(errorBody(status, "filter "+e.Name+" failed"))
			return ran, false
		case !cont:
			c.record(x, e, "respond", x.Response.StatusCode, took)
			return ran, false
		}
		c.record(x, e, "continue", 0, took)
		ran = i + 1
	}
	return ran, true
}

// RunResponse runs the response phase, in reverse order, for the first ran
// filters. A failing response filter with fail_closed turns the response into
// a 502 (the upstream answer may be half-transformed); fail_open keeps it.
func (c *Chain) RunResponse(ctx context.Context, x *Exchange, ran int) {
	if c.Empty() {
		return
	}
	for i := ran - 1; i >= 0; i-- {
		e := &c.Entries[i]
		rf, ok := e.Filter.(ResponseFilter)
		if !ok {
			continue
		}
		start := time.Now()
		err := c.safeResponse(ctx, rf, x)
		if err == nil {
			continue
		}
		c.logFailure(e, x, err)
		if e.FailurePolicy == FailOpen {
			c.record(x, e, "fail_open", 0, time.Since(start))
			continue
		}
		status := e.FailureStatus
		if status == 0 {
			status = http.StatusBadGateway
		}
		c.record(x, e, "error", status, time.Since(start))
		if x.Response != nil && x.Response.Body != nil {
			_ = x.Response.Body.Close()
		}
		x.Response = &Response{StatusCode: status, Header: make(http.Header)}
		x.Response.Header.Set("Content-Type", "application/json")
		x.Response.SetBody(errorBody(status, "filter "+e.Name+" failed"))
	}
}

// Close closes every filter that holds resources.
func (c *Chain) Close(ctx context.Context) error {
	if c == nil {
		return nil
	}
	var errs []error
	for _, e := range c.Entries {
		if cl, ok := e.Filter.(Closer); ok {
			errs = append(errs, cl.Close(ctx))
		}
	}
	return errors.Join(errs...)
}

// ErrPanic wraps a panic recovered from a filter.
var ErrPanic = errors.New("filter: panic")

func (c *Chain) safeRequest(ctx context.Context, e *Entry, x *Exchange) (next bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			next, err = false, errors.Join(ErrPanic, errors.New(toString(p)))
		}
	}()
	return e.Filter.HandleRequest(ctx, x)
}

func (c *Chain) safeResponse(ctx context.Context, rf ResponseFilter, x *Exchange) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.Join(ErrPanic, errors.New(toString(p)))
		}
	}()
	return rf.HandleResponse(ctx, x)
}

func (c *Chain) record(x *Exchange, e *Entry, action string, status int, took time.Duration) {
	x.Decisions = append(x.Decisions, Decision{Filter: e.Name, Action: action, Status: status, Took: took})
	if c.Observer != nil {
		c.Observer.FilterDone(e.Name, e.Kind, action, took)
	}
}

func (c *Chain) logFailure(e *Entry, x *Exchange, err error) {
	if c.Log == nil {
		return
	}
	if ce := c.Log.Check(zap.WarnLevel, "filter failed"); ce != nil {
		ce.Write(zap.String("filter", e.Name), zap.String("kind", e.Kind),
			zap.String("policy", string(e.FailurePolicy)), zap.String("request_id", x.Props.RequestID), zap.Error(err))
	}
}

func toString(p any) string {
	switch v := p.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// errorBody is the JSON error body used for every proxy-generated answer.
func errorBody(status int, msg string) []byte {
	b, _ := json.Marshal(struct {
		Status int    `json:"status"`
		Error  string `json:"error"`
	}{status, msg})
	return append(b, '\n')
}

// ErrorBody returns the JSON error body the proxy uses for its own answers.
func ErrorBody(status int, msg string) []byte { return errorBody(status, msg) }
