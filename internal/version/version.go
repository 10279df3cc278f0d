// Package version holds berth's version, set at build time with
// -ldflags "-X github.com/berth-engine/berth/internal/version.Version=…".
package version

// Version is berth's release version.
var Version = "0.1.0-dev"

// GitCommit is the commit berth was built from, when known.
var GitCommit = ""
