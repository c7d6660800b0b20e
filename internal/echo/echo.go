// Package echo is the demo upstream used by `make run`, the tests and the
// benchmarks: it answers with a JSON description of the request it got.
package echo

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Reply is what the echo upstream answers.
type Reply struct {
	Instance string              `json:"instance"`
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Query    string              `json:"query"`
	Host     string              `json:"host"`
	Proto    string              `json:"proto"`
	Headers  map[string][]string `json:"headers"`
	Body     string              `json:"body"`
}

// MaxBody is the most body bytes echoed back.
const MaxBody = 1 << 20

// Handler answers every request with a Reply. Two special paths help tests
// and demos: /healthz answers 200 "ok"; a `?status=NNN` query sets the status,
// and `?sleep=DURATION` delays the answer (bounded to 10s).
func Handler(instance string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		q := r.URL.Query()
		if d, err := time.ParseDuration(q.Get("sleep")); err == nil && d > 0 {
			if d > 10*time.Second {
				d = 10 * time.Second
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, MaxBody))
		rep := Reply{
			Instance: instance,
			Method:   r.Method,
			Path:     r.URL.Path,
			Query:    r.URL.RawQuery,
			Host:     r.Host,
			Proto:    r.Proto,
			Headers:  r.Header,
			Body:     string(body),
		}
		out, _ := json.Marshal(rep)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo-Instance", instance)
		w.Header().Set("Content-Length", strconv.Itoa(len(out)+1))
		status := http.StatusOK
		if s, err := strconv.Atoi(q.Get("status")); err == nil && s >= 200 && s <= 599 {
			status = s
		}
		w.WriteHeader(status)
		_, _ = w.Write(append(out, '\n'))
	})
}
