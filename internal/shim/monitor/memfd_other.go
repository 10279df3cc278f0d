//go:build !amd64 && !arm64

package monitor

// sysMemfdCreate is unknown here: runtime output goes to an unlinked
// temporary file instead.
const sysMemfdCreate = -1
