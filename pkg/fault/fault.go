// Package fault decides what the bus does with a stage's failure that came from a registry or a build: retry
// it later, or dead-letter it at once. It is the one mapping of registry and buildah errors to bus actions;
// every consuming stage classifies such failures with Classify.
//
//	failure                                                   bus action
//	already marked with bus.Permanent, bus.Retry or bus.Wait  as marked
//	registry.ErrRateLimited with a Retry-After                retry after the registry's delay
//	harbor.ErrRateLimited with a Retry-After                  retry after Harbor's delay
//	registry.ErrRateLimited, ErrUnavailable,                  retry with the consumer's back-off
//	  ErrIncompleteWrite; harbor.ErrRateLimited,
//	  ErrUnavailable (a 5xx, no answer); a context that ended (the stage
//	  is stopping, or a build was stopped)
//	anything else: registry.ErrNotFound, ErrUnauthorized,     dead-letter at once, with the error as reason
//	  ErrInvalidReference, ErrTLS, ErrBaseMismatch, content
//	  the client cannot use, a failed buildah build, a
//	  recipe's own timeout, a missing build context
//
// Bad credentials and an unverifiable certificate are dead-lettered: they are fixed by changing the
// configuration, which restarts the process, and the dead letter keeps the event and says what to fix.
package fault

import (
	"errors"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/registry"
)

// Classify marks err for the bus as the table of the package comment says. Classify(nil) is nil.
func Classify(err error) error {
	switch {
	case err == nil, bus.IsPermanent(err), bus.IsRetry(err):
		return err
	case registry.Retryable(err):
		if d, ok := registry.RetryAfter(err); ok {
			return bus.Retry(err, d)
		}
		return err
	case harbor.Retryable(err):
		var he *harbor.Error
		if errors.As(err, &he) && he.RetryAfter > 0 {
			return bus.Retry(err, he.RetryAfter)
		}
		return err
	}
	return bus.Permanent(err)
}
