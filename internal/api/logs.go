package api

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types"
)

// timestampFormat is docker's fixed-width RFC 3339 (jsonmessage's
// RFC3339NanoFixed), so that timestamped lines align.
const timestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

func (rt *router) getContainerLogs(c *call) error {
	// Everything is validated before the 200 goes out: after that errors
	// can only travel in the stream.
	opts := LogsOptions{
		Stdout:     c.bool("stdout"),
		Stderr:     c.bool("stderr"),
		Follow:     c.bool("follow"),
		Timestamps: c.bool("timestamps"),
		Details:    c.bool("details"),
		Tail:       parseTail(c.str("tail")),
	}
	if !opts.Stdout && !opts.Stderr {
		return invalidArg("Bad parameters: you must choose at least one stream")
	}
	now := time.Now()
	var err error
	if opts.Since, err = parseTime(c.str("since"), now); err != nil {
		return err
	}
	if opts.Until, err = parseTime(c.str("until"), now); err != nil {
		return err
	}
	ctx, cancel := untilStopping(c.ctx)
	defer cancel()
	msgs, info, err := rt.b.Containers.Logs(ctx, c.name, opts)
	if err != nil {
		return err
	}
	contentType := types.MediaTypeRawStream
	if !info.TTY && versionAtLeast(c.version, "1.42") {
		contentType = types.MediaTypeMultiplexedStream
	}
	c.w.Header().Set("Content-Type", contentType)
	c.w.WriteHeader(http.StatusOK)
	c.w.Flush() // `docker logs -f` waits for the header

	sw := newStreamWriter(c.w, false)
	var stdout, stderr, syserr io.Writer = sw, sw, sw
	if !info.TTY {
		stdout = NewStdWriter(sw, stdcopy.Stdout)
		stderr = NewStdWriter(sw, stdcopy.Stderr)
		syserr = NewStdWriter(sw, stdcopy.Systemerr)
	}
	for m := range msgs {
		var werr error
		if m.Err != nil {
			_, werr = fmt.Fprintf(syserr, "Error grabbing logs: %v\n", m.Err)
		} else if line := formatLogLine(m, opts); len(line) > 0 {
			switch {
			case m.Stream == "stderr" && opts.Stderr:
				_, werr = stderr.Write(line)
			case m.Stream != "stderr" && opts.Stdout:
				_, werr = stdout.Write(line)
			}
		}
		// Flush whenever the next message is not already waiting (with
		// --follow that is after every line), so that output is live but
		// a long backlog still goes out in large writes.
		if werr == nil && (opts.Follow || len(msgs) == 0) {
			werr = sw.Flush()
		}
		if werr != nil {
			return nil // the client is gone; the deferred cancel stops the reader
		}
	}
	return nil
}

// formatLogLine prefixes a log line with its details (attributes) and
// timestamp as requested.
func formatLogLine(m LogMessage, opts LogsOptions) []byte {
	if !opts.Timestamps && !opts.Details {
		return m.Line
	}
	var line []byte
	if opts.Timestamps {
		line = append(line, m.Time.UTC().Format(timestampFormat)...)
		line = append(line, ' ')
	}
	if opts.Details {
		keys := make([]string, 0, len(m.Attrs))
		for k := range m.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				line = append(line, ',')
			}
			line = append(line, url.QueryEscape(k)...)
			line = append(line, '=')
			line = append(line, url.QueryEscape(m.Attrs[k])...)
		}
		line = append(line, ' ')
	}
	return append(line, m.Line...)
}
