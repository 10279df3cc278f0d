package monitor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The shim's own diagnostics go to its stderr, which it points at
// <bundle>/shim.log, in log/slog's text format (time=… level=… msg=…
// key=value). It does not link log/slog itself: measured, slog adds ~45
// KiB to every shim, and the shim logs a handful of lines in its life.

var (
	logMu sync.Mutex
	logID string // the container, added to every line
)

func logWarn(msg string, kv ...any)  { logLine("WARN", msg, kv) }
func logError(msg string, kv ...any) { logLine("ERROR", msg, kv) }

func logLine(level, msg string, kv []any) {
	b := make([]byte, 0, 256)
	b = append(b, "time="...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, " level="...)
	b = append(b, level...)
	b = append(b, " msg="...)
	b = appendLogValue(b, msg)
	if logID != "" {
		b = append(b, " id="...)
		b = appendLogValue(b, logID)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		b = append(b, ' ')
		b = append(b, fmt.Sprint(kv[i])...)
		b = append(b, '=')
		var s string
		switch v := kv[i+1].(type) {
		case string:
			s = v
		case error:
			s = v.Error()
		case int:
			s = strconv.Itoa(v)
		case int64:
			s = strconv.FormatInt(v, 10)
		default:
			s = fmt.Sprint(v)
		}
		b = appendLogValue(b, s)
	}
	b = append(b, '\n')
	logMu.Lock()
	_, _ = os.Stderr.Write(b)
	logMu.Unlock()
}

// appendLogValue quotes a value the way slog's text handler does: only
// when it is empty or holds spaces, quotes, '=' or non-printable bytes.
func appendLogValue(b []byte, s string) []byte {
	if s == "" || strings.ContainsAny(s, " \"=") || strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}
