package api

import (
	"context"
	"strconv"
	"strings"
)

// APIVersion is the newest Engine API version berth speaks; it is the
// version of unversioned requests and the one announced in Api-Version.
const APIVersion = "1.56"

// MinAPIVersion is the oldest Engine API version berth accepts, as dockerd.
const MinAPIVersion = "1.24"

type versionKey struct{}

// VersionFromContext returns the API version negotiated for the request
// that ctx belongs to (the "/v1.NN" prefix, or APIVersion without one), so
// that backends can keep docker's behaviour for older clients.
func VersionFromContext(ctx context.Context) string {
	if v, ok := ctx.Value(versionKey{}).(string); ok && v != "" {
		return v
	}
	return APIVersion
}

// WithVersion returns ctx carrying the API version v; the router sets it,
// and tests of backends can use it to simulate older clients.
func WithVersion(ctx context.Context, v string) context.Context {
	return context.WithValue(ctx, versionKey{}, v)
}

// compareVersions compares dotted API versions numerically ("1.9" < "1.10")
// as moby does; a part that is not a number counts as 0.
func compareVersions(a, b string) int {
	if a == b {
		return 0
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	n := max(len(as), len(bs))
	for i := range n {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		switch {
		case x > y:
			return 1
		case x < y:
			return -1
		}
	}
	return 0
}

// versionLess reports whether API version v is older than min.
func versionLess(v, min string) bool { return compareVersions(v, min) < 0 }

// versionAtLeast reports whether API version v is min or newer.
func versionAtLeast(v, min string) bool { return compareVersions(v, min) >= 0 }

// splitVersion splits a "/v1.NN/rest" path into its version and the rest,
// like moby's "/v{version:[0-9.]+}" matcher. Paths without a version
// prefix come back unchanged with an empty version.
func splitVersion(p string) (version, rest string) {
	if !strings.HasPrefix(p, "/v") {
		return "", p
	}
	i := 2
	for i < len(p) && (p[i] >= '0' && p[i] <= '9' || p[i] == '.') {
		i++
	}
	if i == 2 || (i < len(p) && p[i] != '/') {
		return "", p // "/volumes", "/v1x": not a version prefix
	}
	return p[2:i], p[i:]
}
