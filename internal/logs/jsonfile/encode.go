// Package jsonfile is docker's json-file log driver: one JSON object per
// line, {"log":"hello\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"},
// with docker's max-size/max-file rotation. The Writer runs inside
// berth-shim (so this package imports only the standard library); the
// reader serves `logs --follow --since --until --tail` in the daemon.
package jsonfile

import (
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"
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
	dst = appendString(dst, line)
	dst = append(dst, `,"stream":`...)
	dst = appendString(dst, []byte(stream))
	dst = append(dst, `,"time":"`...)
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, "\"}\n"...)
	return dst
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does with
// HTML escaping on (docker's jsonlog encoder matches it): invalid UTF-8
// becomes U+FFFD, U+2028 and U+2029 are escaped.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// entry is the on-disk shape of one log line.
type entry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// ParseLine decodes one line of a json-file log (with or without its
// trailing newline). Lines come from disk and may be damaged; a line that
// is not a log entry is an error, never a panic.
func ParseLine(line []byte) (Message, error) {
	var e entry
	if err := json.Unmarshal(line, &e); err != nil {
		return Message{}, err
	}
	if e.Stream == "" && e.Log == "" {
		return Message{}, errors.New("not a log entry")
	}
	return Message{Stream: e.Stream, Line: []byte(e.Log), Time: e.Time}, nil
}
