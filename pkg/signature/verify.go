package signature

import (
	"context"
	"fmt"
	"strings"

	"github.com/harborflow/harborflow/pkg/registry"
)

// Verify checks that image (registry/repository@digest) has a signature, under its sha256-<hex>.sig tag, of
// exactly that digest that verifies with one of verifiers. It returns nil when one does. Otherwise the error
// says why, and is ErrNotSigned, ErrTampered or ErrUntrustedKey (in that order of precedence when signatures
// fail for different reasons: a tampered signature is reported over an unknown key); a registry error
// (registry.ErrUnavailable, ...) is returned as such.
//
// The repository the payload names is not checked, as cosign does not check it: a signature copied along
// with its image to another repository still verifies there.
func Verify(ctx context.Context, client *registry.Client, image string, verifiers []*Verifier) error {
	t, err := parseTarget(image)
	if err != nil {
		return fmt.Errorf("verifying: %w", err)
	}
	if len(verifiers) == 0 {
		return fmt.Errorf("verifying %s: %w: no public key configured", image, ErrKey)
	}
	m, ok, err := existing(ctx, client, t)
	if err != nil {
		return fmt.Errorf("verifying %s: %w", image, err)
	}
	if !ok {
		return fmt.Errorf("verifying %s: %w: no tag %s", image, ErrNotSigned, t.tag)
	}
	layers, err := readLayers(ctx, client, t, m)
	if err != nil {
		return fmt.Errorf("verifying %s: %w", image, err)
	}
	if len(layers) == 0 {
		return fmt.Errorf("verifying %s: %w: tag %s holds no %s layer", image, ErrNotSigned, t.tag, MediaTypePayload)
	}
	known := make(map[string]bool, len(verifiers))
	for _, v := range verifiers {
		known[v.id] = true
	}
	var tampered, untrusted []string
	for i, l := range layers {
		if l.bad != "" {
			tampered = append(tampered, fmt.Sprintf("signature %d: %s", i+1, l.bad))
			continue
		}
		v := verifying(verifiers, l)
		switch {
		case v == nil && known[l.keyID]:
			tampered = append(tampered, fmt.Sprintf("signature %d: does not verify with key %s it names: the payload or the signature was altered", i+1, l.keyID))
			continue
		case v == nil:
			untrusted = append(untrusted, fmt.Sprintf("signature %d", i+1))
			continue
		}
		ok, why := claims(l.payload, t.digest)
		if ok {
			return nil
		}
		tampered = append(tampered, fmt.Sprintf("signature %d (key %s): %s", i+1, v.id, why))
	}
	if len(tampered) > 0 {
		return fmt.Errorf("verifying %s: %w: %s", image, ErrTampered, strings.Join(tampered, "; "))
	}
	return fmt.Errorf("verifying %s: %w: %s verify with none of the %d keys", image, ErrUntrustedKey, strings.Join(untrusted, ", "), len(verifiers))
}

// verifying returns the verifier l's signature verifies with, trying the key l names first; nil for none.
func verifying(verifiers []*Verifier, l layer) *Verifier {
	for _, v := range verifiers {
		if v.id == l.keyID && v.verify(l.sig, l.payload) {
			return v
		}
	}
	for _, v := range verifiers {
		if v.id != l.keyID && v.verify(l.sig, l.payload) {
			return v
		}
	}
	return nil
}
