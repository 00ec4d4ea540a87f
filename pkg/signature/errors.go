package signature

import "errors"

// Errors of Verify, and of loading keys, matched with errors.Is.
var (
	// ErrNotSigned: the image has no signature: no .sig tag, or one without a simple-signing layer.
	ErrNotSigned = errors.New("image is not signed")
	// ErrTampered: a signature names another digest, its payload is not a cosign payload, or a signature
	// marked as made with a configured key does not verify with it (payload or signature altered).
	ErrTampered = errors.New("signature is for another digest or was altered")
	// ErrUntrustedKey: the image is signed, but by no configured key.
	ErrUntrustedKey = errors.New("signed with a key that is not configured")
	// ErrKey: a key could not be loaded: not PEM, a key type or format that is not supported, or a wrong
	// password for an encrypted key.
	ErrKey = errors.New("invalid key")
)
