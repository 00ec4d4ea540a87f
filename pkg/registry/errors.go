package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/regclient/regclient/types/errs"

	"github.com/harborflow/harborflow/pkg/imageref"
)

// Errors every call returns, matched with errors.Is. The error's message keeps what regclient and the
// registry said.
var (
	// ErrNotFound: the manifest, blob or repository does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: the registry refused the credentials, or they are missing (401, 403).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRateLimited: the registry answered 429 and asked for more patience than the client has. The error
	// is a *RateLimitError with the delay the registry asked for.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnavailable: the registry could not answer: 5xx, 408, connection refused or reset, timeouts.
	ErrUnavailable = errors.New("registry unavailable")
	// ErrInvalidReference: the reference cannot name an artifact in a registry (imageref.ErrInvalid).
	ErrInvalidReference = imageref.ErrInvalid
	// ErrTLS: the registry's certificate did not verify. Set ca_file (or insecure: true) for the host.
	ErrTLS = errors.New("TLS verification failed")
	// ErrBaseMismatch: Rebase was asked to move an image off a base it is not built on.
	ErrBaseMismatch = errors.New("image is not built on the base")
	// ErrIncompleteWrite: the registry refused a write because something it refers to is missing or unreadable
	// on the registry's side: a manifest naming a blob or child manifest the repository lacks
	// (MANIFEST_BLOB_UNKNOWN, or DIGEST_INVALID, which distribution answers when it reads a link file that an
	// identical, concurrent or interrupted write is rewriting), an upload session the registry forgot
	// (BLOB_UPLOAD_UNKNOWN), a blob it no longer has (BLOB_UNKNOWN). These follow an interrupted write — a
	// process killed mid-push, a registry restarted — and writing again, which re-pushes what is missing,
	// repairs them. Retryable.
	ErrIncompleteWrite = errors.New("registry lacks part of the write")
	// ErrPrecondition: the registry refused the write with 412: Harbor's answer to a push onto a tag that an
	// immutable-tag rule protects, even of the identical manifest (HARBOR.md §7.1). Not retryable: the rule
	// has to change first.
	ErrPrecondition = errors.New("precondition failed")
)

// RateLimitError is returned when a registry rate-limits harborflow for longer than the client waits, or
// when the caller's context ends before the wait would. It is ErrRateLimited.
type RateLimitError struct {
	// Host is the host that asked for the delay.
	Host string
	// RetryAfter is how long the registry asked to wait from now; zero when it did not say.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	if e.RetryAfter <= 0 {
		return fmt.Sprintf("registry %s: rate limited (429)", e.Host)
	}
	return fmt.Sprintf("registry %s: rate limited (429), retry after %s", e.Host, e.RetryAfter.Round(time.Second))
}

// Is makes a RateLimitError ErrRateLimited, and tells regclient not to retry it itself.
func (e *RateLimitError) Is(target error) bool {
	return target == ErrRateLimited || target == errs.ErrNotRetryable
}

// Retryable reports whether trying the same call again later may succeed: yes for ErrRateLimited,
// ErrUnavailable, ErrIncompleteWrite and a context that ended; no for ErrNotFound, ErrUnauthorized,
// ErrInvalidReference, ErrTLS and content the client cannot use.
func Retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrRateLimited), errors.Is(err, ErrUnavailable), errors.Is(err, ErrIncompleteWrite),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// RetryAfter returns the delay a rate-limiting registry asked for, if err carries one.
func RetryAfter(err error) (time.Duration, bool) {
	var rl *RateLimitError
	if errors.As(err, &rl) && rl.RetryAfter > 0 {
		return rl.RetryAfter, true
	}
	return 0, false
}

// kindError gives a regclient error one of the package's sentinels without changing its message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

func (e *kindError) Is(target error) bool { return target == e.kind }

// httpStatus finds regclient's "[http NNN]" in an error's message: regclient reports unexpected statuses as
// text around errs.ErrHTTPStatus.
var httpStatus = regexp.MustCompile(`\[http (\d{3})\]`)

// errorCode finds the error codes of the distribution spec in the registry's error body, which regclient
// copies into its message ({"errors":[{"code":"MANIFEST_BLOB_UNKNOWN",...}]}).
var errorCode = regexp.MustCompile(`"code"\s*:\s*"([A-Z_]+)"`)

// incompleteWrite reports whether err is a registry's refusal that an interrupted write leaves behind (see
// ErrIncompleteWrite): BLOB_UPLOAD_UNKNOWN (a 404 on an upload session), or a 400 with MANIFEST_BLOB_UNKNOWN,
// BLOB_UNKNOWN, BLOB_UPLOAD_INVALID or DIGEST_INVALID. A 404 BLOB_UNKNOWN is a read of a blob that is not
// there: ErrNotFound.
func incompleteWrite(err error) bool {
	msg := err.Error()
	status := httpStatus.FindStringSubmatch(msg)
	if status == nil {
		return false
	}
	for _, m := range errorCode.FindAllStringSubmatch(msg, -1) {
		switch m[1] {
		case "BLOB_UPLOAD_UNKNOWN":
			return true
		case "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "DIGEST_INVALID":
			if status[1] == "400" {
				return true
			}
		}
	}
	return false
}

// mapErr adds the package's sentinel to an error from regclient or the transport.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	kind := errKind(err)
	if kind == nil || errors.Is(err, kind) {
		return err
	}
	return &kindError{kind: kind, err: err}
}

func errKind(err error) error {
	var (
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
		urlErr     *url.Error
		netErr     net.Error
	)
	switch {
	case errors.Is(err, ErrRateLimited):
		return ErrRateLimited
	case errors.Is(err, context.Canceled), errors.Is(err, errs.ErrCanceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return ErrUnavailable
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr),
		errors.As(err, &recordErr):
		return ErrTLS
	case errors.Is(err, errs.ErrHTTPUnauthorized):
		return ErrUnauthorized
	case errors.Is(err, errs.ErrHTTPRateLimit):
		return ErrRateLimited
	case incompleteWrite(err):
		return ErrIncompleteWrite
	case errors.Is(err, errs.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, errs.ErrInvalidReference), errors.Is(err, errs.ErrMissingTagOrDigest):
		return ErrInvalidReference
	case errors.Is(err, errs.ErrRetryLimitExceeded), errors.Is(err, errs.ErrBackoffLimit),
		errors.Is(err, errs.ErrAllRequestsFailed):
		return ErrUnavailable
	case errors.As(err, &urlErr), errors.As(err, &netErr):
		return ErrUnavailable
	}
	if m := httpStatus.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		switch {
		case code >= 500 || code == 408:
			return ErrUnavailable
		case code == 412:
			return ErrPrecondition
		}
	}
	return nil
}
