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
	t, err := parseTarget(image, TagSuffix)
	if err != nil {
		return fmt.Errorf("verifying: %w", err)
	}
	if len(verifiers) == 0 {
		return fmt.Errorf("verifying %s: %w: no public key configured", image, ErrKey)
	}
	layers, err := read(ctx, client, t, MediaTypePayload)
	if err != nil {
		return fmt.Errorf("verifying %s: %w", image, err)
	}
	_, err = judge(layers, verifiers, (*Verifier).verifies, func(l layer) (bool, string) { return claims(l.payload, t.digest) })
	if err != nil {
		return fmt.Errorf("verifying %s: %w", image, err)
	}
	return nil
}

// read reads the layers of mediaType under t's tag; the error is ErrNotSigned when there are none.
func read(ctx context.Context, client *registry.Client, t target, mediaType string) ([]layer, error) {
	m, ok, err := existing(ctx, client, t)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: no tag %s", ErrNotSigned, t.tag)
	}
	layers, err := readLayers(ctx, client, t, m, mediaType)
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("%w: tag %s holds no %s layer", ErrNotSigned, t.tag, mediaType)
	}
	return layers, nil
}

// judge returns the first layer whose signature verifies with one of verifiers (verifies) and whose content
// claims what is wanted (claim). Without one, the error is ErrTampered or ErrUntrustedKey, and says why of
// each layer.
func judge(layers []layer, verifiers []*Verifier, verifies func(*Verifier, layer) bool, claim func(layer) (bool, string)) (layer, error) {
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
		v := verifying(verifiers, l, verifies)
		switch {
		case v == nil && known[l.keyID]:
			tampered = append(tampered, fmt.Sprintf("signature %d: does not verify with key %s it names: the payload or the signature was altered", i+1, l.keyID))
			continue
		case v == nil:
			untrusted = append(untrusted, fmt.Sprintf("signature %d", i+1))
			continue
		}
		ok, why := claim(l)
		if ok {
			return l, nil
		}
		tampered = append(tampered, fmt.Sprintf("signature %d (key %s): %s", i+1, v.id, why))
	}
	if len(tampered) > 0 {
		return layer{}, fmt.Errorf("%w: %s", ErrTampered, strings.Join(tampered, "; "))
	}
	return layer{}, fmt.Errorf("%w: %s verify with none of the %d keys", ErrUntrustedKey, strings.Join(untrusted, ", "), len(verifiers))
}

// verifying returns the verifier l's signature verifies with, trying the key l names first; nil for none.
func verifying(verifiers []*Verifier, l layer, verifies func(*Verifier, layer) bool) *Verifier {
	for _, v := range verifiers {
		if v.id == l.keyID && verifies(v, l) {
			return v
		}
	}
	for _, v := range verifiers {
		if v.id != l.keyID && verifies(v, l) {
			return v
		}
	}
	return nil
}
