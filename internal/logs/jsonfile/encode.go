// Package jsonfile is docker's json-file log driver: one JSON object per
// line, {"log":"hello\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"},
// with docker's max-size/max-file rotation. The Writer runs inside
// berth-shim (so this package imports only the standard library); the
// reader serves `logs --follow --since --until --tail` in the daemon.
package jsonfile

import (
	"errors"
	"time"

	"github.com/berth-engine/berth/internal/logs/jsonlite"
)

// MaxLineSize is the largest "log" value of one entry. Longer output lines
// are split into several entries, as docker's log copier does (its buffer
// is 16 KiB); only the last piece ends with the newline.
const MaxLineSize = 16 << 10

// AppendEntry appends one encoded log entry, newline included, to dst. The
// encoding is byte-for-byte what docker writes: keys in the order log,
// stream, time; time in RFC 3339 with nanoseconds in UTC; HTML characters
// escaped as encoding/json does.
func AppendEntry(dst []byte, stream string, line []byte, t time.Time) []byte {
	dst = append(dst, `{"log":`...)
	dst = jsonlite.AppendBytes(dst, line)
	dst = append(dst, `,"stream":`...)
	dst = jsonlite.AppendString(dst, stream)
	dst = append(dst, `,"time":"`...)
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, "\"}\n"...)
	return dst
}

// ParseLine decodes one line of a json-file log (with or without its
// trailing newline). Lines come from disk and may be damaged; a line that
// is not a log entry is an error, never a panic.
func ParseLine(line []byte) (Message, error) {
	var m Message
	seen := false
	err := jsonlite.Members(line, func(k string, v jsonlite.Value) error {
		var err error
		switch k {
		case "log":
			m.Line, err = v.Bytes()
			seen = true
		case "stream":
			m.Stream, err = v.Str()
			seen = true
		case "time":
			var s string
			if s, err = v.Str(); err == nil && v.Kind() != jsonlite.Null {
				m.Time, err = time.Parse(time.RFC3339Nano, s)
			}
		}
		return err
	})
	if err != nil {
		return Message{}, err
	}
	if !seen {
		return Message{}, errors.New("not a log entry")
	}
	return m, nil
}
