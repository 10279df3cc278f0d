package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/containerd/errdefs"
)

// statusFromError maps an error to docker's HTTP status code. The errdefs
// kind of the outermost classified error wins (errdefs.Resolve), so a
// backend can re-classify a wrapped error.
func statusFromError(err error) int {
	var tle tooLargeError
	if errors.As(err, &tle) {
		return http.StatusRequestEntityTooLarge
	}
	switch rerr := errdefs.Resolve(err); {
	case errdefs.IsNotFound(rerr):
		return http.StatusNotFound
	case errdefs.IsInvalidArgument(rerr), errdefs.IsOutOfRange(rerr):
		return http.StatusBadRequest
	case errdefs.IsConflict(rerr), errdefs.IsAlreadyExists(rerr), errdefs.IsFailedPrecondition(rerr):
		return http.StatusConflict
	case errdefs.IsNotModified(rerr):
		return http.StatusNotModified
	case errdefs.IsUnauthorized(rerr):
		return http.StatusUnauthorized
	case errdefs.IsPermissionDenied(rerr):
		return http.StatusForbidden
	case errdefs.IsUnavailable(rerr):
		return http.StatusServiceUnavailable
	case errdefs.IsNotImplemented(rerr):
		return http.StatusNotImplemented
	default:
		return http.StatusInternalServerError
	}
}

// invalidArg returns an InvalidArgument error (HTTP 400) with msg as its
// whole message, for request validation.
func invalidArg(msg string) error {
	return errdefs.ErrInvalidArgument.WithMessage(msg)
}

// clientGone reports whether err only says that the client went away, in
// which case there is nobody to send an error to.
func clientGone(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ctx.Err()))
}
