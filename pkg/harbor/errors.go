package harbor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-openapi/runtime"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/models"
)

// Errors the client returns, matched with errors.Is. A failed call's error is an *Error, which says what
// failed and keeps Harbor's own code and message.
var (
	// ErrBadRequest: Harbor refused the request as malformed (400), e.g. copying from a source that does not
	// exist (HARBOR.md §7) or scanning an artifact the scanner does not support (§7.1).
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized: the credentials are wrong or missing (401). With a wrong password Harbor still answers
	// some reads as for an anonymous user (§7).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the account may not do this (403), e.g. manage a project's webhooks.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the project, repository, artifact, tag, label or policy does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrMethodNotAllowed: the operation is not allowed here (405), e.g. copying into a proxy-cache project.
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrConflict: it exists already, or is in a state that refuses the change (409): a tag already in the
	// repository, a label already on the artifact, a duplicate policy name, a scan still pending (§7.1).
	ErrConflict = errors.New("conflict")
	// ErrPrecondition: a precondition failed (412): an immutable tag cannot be moved, copied onto or deleted
	// (§7.1).
	ErrPrecondition = errors.New("precondition failed")
	// ErrUnprocessable: Harbor's validation rejected a parameter (422), e.g. page_size above 100.
	ErrUnprocessable = errors.New("unprocessable entity")
	// ErrRateLimited: Harbor, or a proxy in front of it, asked to slow down (429). Error.RetryAfter says for
	// how long when it was told.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnavailable: Harbor could not answer: a 5xx, a connection that failed, a timeout. Retryable.
	ErrUnavailable = errors.New("harbor unavailable")
	// ErrTLS: Harbor's certificate did not verify. Set ca_file (or insecure: true) for the host.
	ErrTLS = errors.New("TLS verification failed")
	// ErrInvalidHost: the host settings cannot name a Harbor.
	ErrInvalidHost = errors.New("invalid harbor host")
	// ErrUnexpectedResponse: Harbor answered with a status none of the above covers, or a success the client
	// cannot read (a create without Location).
	ErrUnexpectedResponse = errors.New("unexpected response")
)

// Error is a call Harbor refused, or that never got an answer. errors.Is matches its sentinel (Err…).
type Error struct {
	// Op is what the client was doing ("copying artifact"), Resource what on (project/repo:tag).
	Op, Resource string
	// Status is the HTTP status; 0 when there was no answer.
	Status int
	// Code and Message are Harbor's own ({"errors":[{"code","message"}]}); empty when it sent none.
	Code, Message string
	// RequestID is the X-Request-Id the request carried, to find it in Harbor's logs.
	RequestID string
	// RetryAfter is the Retry-After of a 429 or 503; 0 when there was none.
	RetryAfter time.Duration

	kind  error // the sentinel
	cause error // go-client's error: a typed response, a *runtime.APIError, or the transport's error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Resource != "" {
		b.WriteString(" ")
		b.WriteString(e.Resource)
	}
	b.WriteString(": ")
	switch {
	case e.Status >= 400:
		b.WriteString(strconv.Itoa(e.Status))
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		} else if e.Code == "" {
			b.WriteString(" " + http.StatusText(e.Status))
		}
	case e.cause != nil:
		// No answer (or a success the client cannot use): say what went wrong.
		b.WriteString(e.cause.Error())
	default:
		b.WriteString(e.kind.Error())
	}
	return b.String()
}

// Unwrap gives the sentinel and go-client's error (errors.As reaches *runtime.APIError or the typed response,
// and the transport's error when there was no answer). Only the latter is part of the message: go-client's
// text of an answer repeats the status and prints pointers.
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// Retryable reports whether the same call may succeed later: yes for ErrRateLimited and ErrUnavailable.
func Retryable(err error) bool {
	return errors.Is(err, ErrRateLimited) || errors.Is(err, ErrUnavailable)
}

// statusKinds maps the statuses Harbor answers (HARBOR.md §3.1) to sentinels. A status not listed is
// ErrUnavailable from 500 up and ErrUnexpectedResponse otherwise.
var statusKinds = map[int]error{
	http.StatusBadRequest:          ErrBadRequest,
	http.StatusUnauthorized:        ErrUnauthorized,
	http.StatusForbidden:           ErrForbidden,
	http.StatusNotFound:            ErrNotFound,
	http.StatusMethodNotAllowed:    ErrMethodNotAllowed,
	http.StatusConflict:            ErrConflict,
	http.StatusPreconditionFailed:  ErrPrecondition,
	http.StatusUnprocessableEntity: ErrUnprocessable,
	http.StatusTooManyRequests:     ErrRateLimited,
	http.StatusRequestTimeout:      ErrUnavailable,
}

// probeStatuses are the statuses go-client declares for some operation: a typed error is asked, through
// IsCode, which of them it is. 500 is declared nearly everywhere; the rest are Harbor's 4xx.
var probeStatuses = []int{400, 401, 403, 404, 405, 409, 412, 415, 422, 429, 500, 502, 503, 504}

func kindOf(status int) error {
	if k, ok := statusKinds[status]; ok {
		return k
	}
	if status >= 500 {
		return ErrUnavailable
	}
	return ErrUnexpectedResponse
}

// codeError is what every typed error response of go-client implements (…NotFound, …Conflict, …).
type codeError interface {
	error
	IsCode(int) bool
}

// payloadError is a typed error response with Harbor's error body decoded.
type payloadError interface {
	GetPayload() *models.Errors
}

// wrapErr turns what a go-client call returned into an *Error: the one place where Harbor's statuses become
// sentinels. Declared statuses come back as typed errors with the body decoded; undeclared ones (409 and 412
// on a copy, 412 on deletes, 422, 429) as *runtime.APIError without the body (HARBOR.md §4.2), whose body
// the exchange recorded.
func wrapErr(op, resource string, x *exchange, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Resource: resource, RequestID: x.requestID, cause: err}
	var (
		apiErr *runtime.APIError
		typed  codeError
	)
	switch {
	case errors.As(err, &apiErr):
		e.Status = apiErr.Code
	case errors.As(err, &typed) && isResponse(err):
		for _, s := range probeStatuses {
			if typed.IsCode(s) {
				e.Status = s
				break
			}
		}
		if p, ok := err.(payloadError); ok {
			e.Code, e.Message = firstError(p.GetPayload())
		}
	}
	if e.Status == 0 && x.status >= 400 {
		// A typed error of a status the probe does not know: the exchange saw it.
		e.Status = x.status
	}
	if e.Status == 0 {
		e.kind = transportKind(err)
		if x.status != 0 && !netFailure(err) {
			// An answer that is not an error, but that go-client could not read (a body that is not JSON).
			e.kind = ErrUnexpectedResponse
		}
		return e
	}
	if e.Code == "" && e.Message == "" {
		e.Code, e.Message = x.harborError()
	}
	e.kind = kindOf(e.Status)
	if e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable {
		e.RetryAfter = x.retryAfter
	}
	return e
}

// isResponse tells a typed error response from other errors that happen to have IsCode.
func isResponse(err error) bool {
	_, ok := err.(interface{ IsClientError() bool })
	return ok
}

func firstError(p *models.Errors) (code, message string) {
	if p == nil {
		return "", ""
	}
	for _, e := range p.Errors {
		if e != nil && (e.Code != "" || e.Message != "") {
			return e.Code, e.Message
		}
	}
	return "", ""
}

// transportKind classifies an error without an HTTP answer.
func transportKind(err error) error {
	var (
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr),
		errors.As(err, &recordErr):
		return ErrTLS
	}
	return ErrUnavailable
}

// netFailure tells a connection that failed or was cut off (retryable) from content that could not be read.
func netFailure(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled)
}

// harborErrors is Harbor's error body (HARBOR.md §3.1).
type harborErrors struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

func parseHarborError(body []byte) (code, message string) {
	var he harborErrors
	if json.Unmarshal(body, &he) != nil {
		return "", ""
	}
	for _, e := range he.Errors {
		if e.Code != "" || e.Message != "" {
			return e.Code, e.Message
		}
	}
	return "", ""
}

// unexpected is a success the client cannot use.
func unexpected(op, resource string, x *exchange, format string, args ...any) error {
	return &Error{Op: op, Resource: resource, RequestID: x.requestID, Status: x.status, kind: ErrUnexpectedResponse,
		cause: fmt.Errorf(format, args...)}
}
