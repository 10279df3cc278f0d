package api

import (
	"fmt"
	"net/http"
)

// streamRoutes take request bodies of any size: build contexts, image
// tarballs (load, import from "-"), archive uploads, and the hijacked
// attach whose input follows on the connection. Every other route reads
// at most a JSON document and is capped at maxJSONBody.
var streamRoutes = map[string]bool{
	"POST /build":                    true,
	"POST /images/load":              true,
	"POST /images/create":            true,
	"PUT /containers/{name}/archive": true,
	"POST /containers/{name}/attach": true,
}

// tooLargeError is a request body over its route's limit: 413.
type tooLargeError struct{ limit int64 }

func (e tooLargeError) Error() string {
	return fmt.Sprintf("request body too large: JSON bodies are limited to %d bytes", e.limit)
}

// limitBody refuses a declared body over the route's limit before the
// handler runs (nothing is read, nothing changes) and caps bodies of
// unknown length (chunked) at the same limit while they are read.
func limitBody(c *call, rt *route) error {
	if streamRoutes[rt.method+" "+rt.path] {
		return nil
	}
	if c.r.ContentLength > maxJSONBody {
		return tooLargeError{limit: maxJSONBody}
	}
	if c.r.Body != nil && c.r.Body != http.NoBody {
		c.r.Body = http.MaxBytesReader(c.w.ResponseWriter, c.r.Body, maxJSONBody)
	}
	return nil
}
