package harbortest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Harbor's error codes (HARBOR.md §3.1) and the statuses they go with.
const (
	codeBadRequest    = "BAD_REQUEST"
	codeUnauthorized  = "UNAUTHORIZED"
	codeForbidden     = "FORBIDDEN"
	codeNotFound      = "NOT_FOUND"
	codeConflict      = "CONFLICT"
	codePrecondition  = "PRECONDITION"
	codeUnprocessable = "UNPROCESSABLE_ENTITY"
	codeUnsupported   = "UNSUPPORTED"
	codeUnknown       = "UNKNOWN"
	codeForeignKey    = "VIOLATE_FOREIGN_KEY_CONSTRAINT"
)

// apiError is an answer in Harbor's error shape.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func errNotFound(format string, args ...any) *apiError {
	return errorf(http.StatusNotFound, codeNotFound, format, args...)
}

func errBadRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, codeBadRequest, format, args...)
}

func errConflict(format string, args ...any) *apiError {
	return errorf(http.StatusConflict, codeConflict, format, args...)
}

func errPrecondition(format string, args ...any) *apiError {
	return errorf(http.StatusPreconditionFailed, codePrecondition, format, args...)
}

var (
	errUnauthorized = errorf(http.StatusUnauthorized, codeUnauthorized, "unauthorized")
	errForbidden    = errorf(http.StatusForbidden, codeForbidden, "forbidden")
)

// writeError answers err in Harbor's error body, `application/json; charset=utf-8` (HARBOR.md §3.1, §7). A 5xx
// body is always the same, as Harbor's.
func writeError(w http.ResponseWriter, err *apiError) {
	if err.status >= 500 {
		err = &apiError{status: err.status, code: codeUnknown, message: "internal server error"}
	}
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": err.code, "message": err.message}}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(err.status)
	_, _ = w.Write(body)
}

// writeJSON answers v as `application/json` with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, errorf(http.StatusInternalServerError, codeUnknown, "encoding the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// apiTime is a time as Harbor's API writes it (go-openapi strfmt.DateTime: milliseconds, UTC, "Z").
type apiTime time.Time

func (t apiTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format("2006-01-02T15:04:05.000Z") + `"`), nil
}

// randomToken is an opaque registry token.
func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
