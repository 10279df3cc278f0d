package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// maxJSONBody bounds JSON request bodies: a container config is a few KiB,
// so anything near this is a mistake or an attack, not a request.
const maxJSONBody = 10 << 20

// boolValue is moby's httputils.BoolValue: "", "0", "no", "false" and
// "none" (any case, surrounding space ignored) are false, anything else true.
func boolValue(form url.Values, k string) bool {
	s := strings.ToLower(strings.TrimSpace(form.Get(k)))
	return !(s == "" || s == "0" || s == "no" || s == "false" || s == "none")
}

// boolValueOrDefault is boolValue, or d when the parameter is absent.
func boolValueOrDefault(form url.Values, k string, d bool) bool {
	if _, ok := form[k]; !ok {
		return d
	}
	return boolValue(form, k)
}

// intValue parses an optional integer parameter.
func intValue(form url.Values, k string) (n int, ok bool, err error) {
	s := strings.TrimSpace(form.Get(k))
	if s == "" {
		return 0, false, nil
	}
	n, err = strconv.Atoi(s)
	if err != nil {
		return 0, false, invalidArg(fmt.Sprintf("invalid value for %q: %q is not an integer", k, s))
	}
	return n, true, nil
}

// parseFilters decodes the "filters" query parameter in both encodings
// docker clients send: {"term":{"value":true}} and the legacy
// {"term":["value"]}. Values come back sorted and without duplicates.
func parseFilters(s string) (Filters, error) {
	f := Filters{}
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	var sets map[string]map[string]bool
	err := json.Unmarshal([]byte(s), &sets)
	if err == nil {
		for term, vs := range sets {
			list := make([]string, 0, len(vs))
			for v := range vs {
				list = append(list, v)
			}
			slices.Sort(list)
			f[term] = list
		}
		return f, nil
	}
	var lists map[string][]string
	if lerr := json.Unmarshal([]byte(s), &lists); lerr != nil {
		return nil, invalidArg(fmt.Sprintf("invalid filter: %v", err))
	}
	for term, vs := range lists {
		list := slices.Clone(vs)
		if list == nil {
			list = []string{}
		}
		slices.Sort(list)
		f[term] = slices.Compact(list)
	}
	return f, nil
}

// parseTime parses docker's timestamps for since/until: seconds since the
// epoch with an optional fraction ("1700000000.123456789", what docker
// clients send), RFC 3339 (with or without fractional seconds), or a Go
// duration meaning that long ago ("10m"). "" and "0" mean unbounded (the
// zero time).
func parseTime(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if sec, nsec, ok := parseUnixTimestamp(v); ok {
		if sec == 0 && nsec == 0 {
			return time.Time{}, nil
		}
		return time.Unix(sec, nsec), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, invalidArg(fmt.Sprintf("invalid timestamp %q: want seconds since the epoch (1700000000.123456789), RFC 3339 or a duration", v))
}

// parseUnixTimestamp parses "seconds[.fraction]" with at most nine
// fractional digits.
func parseUnixTimestamp(v string) (sec, nsec int64, ok bool) {
	s, frac, hasFrac := strings.Cut(v, ".")
	if s == "" || s == "-" || !allDigits(strings.TrimPrefix(s, "-")) {
		return 0, 0, false
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if !hasFrac {
		return sec, 0, true
	}
	if frac == "" || len(frac) > 9 || !allDigits(frac) {
		return 0, 0, false
	}
	// As in docker's timetypes.ParseTimestamps, the fraction is added
	// to the (possibly negative) seconds: "-2.5" is -1.5 s.
	n, _ := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	return sec, n, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseTail parses the logs "tail" parameter: "all", "" or anything that is
// not a non-negative number means every line (-1), as in dockerd.
func parseTail(v string) int {
	v = strings.TrimSpace(v)
	if v == "" || v == "all" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// checkForJSON is moby's httputils.CheckForJSON: a body must be declared
// application/json; no Content-Type is fine only without a body.
func checkForJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return invalidArg(fmt.Sprintf("malformed Content-Type header (%s): %v", ct, err))
	}
	if mt != "application/json" {
		return invalidArg(fmt.Sprintf("unsupported Content-Type header (%s): must be 'application/json'", ct))
	}
	return nil
}

// decodeJSON decodes one JSON value from r into v. Unknown fields are
// ignored (newer clients send fields berth does not know yet); trailing
// content, syntax and type errors are InvalidArgument errors that say what
// is wrong. trimField is a prefix of Go field paths that has no JSON key of
// its own (the embedded "Config." of container.CreateRequest), removed so
// that messages name fields as the client wrote them.
func decodeJSON(r io.Reader, v any, trimField string) error {
	dec := json.NewDecoder(r)
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if trimField != "" && errors.As(err, &te) {
			te.Field = strings.TrimPrefix(te.Field, trimField)
		}
		return jsonError(err)
	}
	if dec.More() {
		return invalidArg("invalid JSON: unexpected content after the JSON value")
	}
	// A second value after whitespace is caught by More; garbage after the
	// value that is not a value start (e.g. "}") shows up as a token error.
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonError(err)
		}
		return invalidArg("invalid JSON: unexpected content after the JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLargeError{limit: mbe.Limit}
	case errors.Is(err, io.EOF):
		return invalidArg("invalid JSON: got EOF while reading request body")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalidArg("invalid JSON: unexpected end of request body")
	case errors.As(err, &se):
		return invalidArg(fmt.Sprintf("invalid JSON: %v (at byte %d)", se, se.Offset))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return invalidArg(fmt.Sprintf("invalid JSON: field %s: cannot use a JSON %s as %v", field, te.Value, te.Type))
	case errdefs.IsInvalidArgument(err):
		return err
	default:
		return invalidArg(fmt.Sprintf("invalid JSON: %v", err))
	}
}

// errEmptyConfig is dockerd's answer to a create request without a config.
const errEmptyConfig = "config cannot be empty in order to create a container"

// decodeCreateRequest decodes the body of POST /containers/create and
// fills in the parts docker treats as optional, so that backends never see
// nil HostConfig, NetworkingConfig or endpoint settings.
func decodeCreateRequest(body io.Reader) (container.CreateRequest, error) {
	var req container.CreateRequest
	if err := decodeJSON(body, &req, "Config."); err != nil {
		return container.CreateRequest{}, err
	}
	if req.Config == nil {
		return container.CreateRequest{}, invalidArg(errEmptyConfig)
	}
	if req.HostConfig == nil {
		req.HostConfig = &container.HostConfig{}
	}
	if req.NetworkingConfig == nil {
		req.NetworkingConfig = &network.NetworkingConfig{}
	}
	if req.NetworkingConfig.EndpointsConfig == nil {
		req.NetworkingConfig.EndpointsConfig = map[string]*network.EndpointSettings{}
	}
	for k, ep := range req.NetworkingConfig.EndpointsConfig {
		if ep == nil {
			req.NetworkingConfig.EndpointsConfig[k] = &network.EndpointSettings{}
		}
	}
	return req, nil
}
