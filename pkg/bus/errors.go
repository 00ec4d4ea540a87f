package bus

import (
	"errors"
	"time"
)

// permanentError marks an error as permanent.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the message can never succeed (a body that does not decode, a reference
// that cannot exist), so the runner dead-letters it with err's message as the reason instead of retrying.
// The message of err is unchanged and errors.Is/As see through the mark. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent. A permanent mark wins over
// a Retry mark in the same chain.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryError marks an error as retryable after a requested delay.
type retryError struct {
	err   error
	after time.Duration
	// expected marks a wait that is part of normal work (Wait), logged at debug level.
	expected bool
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// Retry marks err as retryable with a requested delay before the next delivery, for a handler that knows
// better than the back-off schedule (a registry's Retry-After, a build slot that frees in a minute). A delay of
// zero or less means the consumer's back-off. Unmarked errors are retryable too; Retry only sets the delay. The
// message of err is unchanged and errors.Is/As see through the mark. Retry(nil, d) is nil.
func Retry(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryError{err: err, after: after}
}

// Wait is Retry for a message that is not ready yet as part of normal work — an untagged platform manifest
// waiting for its index — rather than one that failed: the same nak with delay, logged at debug level instead
// of as a warning. It still counts as a delivery.
func Wait(reason error, after time.Duration) error {
	if reason == nil {
		return nil
	}
	return &retryError{err: reason, after: after, expected: true}
}

// IsRetry reports whether err, or an error it wraps, was marked with Retry or Wait.
func IsRetry(err error) bool {
	var r *retryError
	return errors.As(err, &r)
}

// expectedWait reports whether err was marked with Wait.
func expectedWait(err error) bool {
	var r *retryError
	return errors.As(err, &r) && r.expected
}

// retryAfter returns the delay requested with Retry, if any.
func retryAfter(err error) (time.Duration, bool) {
	var r *retryError
	if errors.As(err, &r) && r.after > 0 {
		return r.after, true
	}
	return 0, false
}
