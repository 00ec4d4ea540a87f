// Package secret holds values that must never be printed: passwords, tokens, webhook secrets. The
// configuration reads them into a Secret, and the libraries (registry, buildah) take them as one, so a log
// line, an error or a %v of a settings struct shows [redacted] wherever the value travels.
package secret

// Secret is a value that must never be printed: fmt, JSON, YAML and zap's reflection encoder show it as
// [redacted].
type Secret string

const redacted = "[redacted]"

// String redacts the secret.
func (Secret) String() string { return redacted }

// GoString redacts the secret for %#v.
func (Secret) GoString() string { return redacted }

// MarshalText redacts the secret in JSON and text encoders.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Value is the secret itself, for comparing and sending.
func (s Secret) Value() string { return string(s) }
