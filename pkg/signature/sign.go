package signature

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"

	"github.com/harborflow/harborflow/pkg/registry"
)

// Signed is what Sign did.
type Signed struct {
	// Ref is the signature's tag, registry/repository:sha256-<hex>.sig.
	Ref string
	// Digest is the digest of the signature manifest under that tag.
	Digest string
	// Added is false when the tag already held a signature of the digest by this key, and nothing was
	// written.
	Added bool
}

// Sign signs image (registry/repository@digest, the digest of an image or of an index) as `cosign sign
// --key` does, into the tag sha256-<hex>.sig of the same repository. When that tag already holds a signature
// of the digest that verifies with this key, nothing is written; when it holds other signatures, this one is
// added as another layer.
func (s *Signer) Sign(ctx context.Context, client *registry.Client, image string) (Signed, error) {
	t, err := parseTarget(image, TagSuffix)
	if err != nil {
		return Signed{}, fmt.Errorf("signing: %w", err)
	}
	out := Signed{Ref: t.repository + ":" + t.tag}
	m, ok, err := existing(ctx, client, t)
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: %w", image, err)
	}
	if ok {
		layers, err := readLayers(ctx, client, t, m, MediaTypePayload)
		if err != nil {
			return Signed{}, fmt.Errorf("signing %s: %w", image, err)
		}
		for _, l := range layers {
			if l.bad != "" || !s.pub.verify(l.sig, l.payload) {
				continue
			}
			if ok, _ := claims(l.payload, t.digest); ok {
				out.Digest = m.digest
				return out, nil
			}
		}
	}

	p, err := newPayload(t)
	if err != nil {
		return Signed{}, fmt.Errorf("signing: %w", err)
	}
	sig, err := s.sv.SignMessage(bytes.NewReader(p))
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: %w", image, err)
	}
	layer := descriptor{MediaType: MediaTypePayload, Annotations: map[string]string{
		AnnotationSignature: base64.StdEncoding.EncodeToString(sig),
		AnnotationKey:       s.pub.id,
	}}
	md, err := appendLayer(ctx, client, t, m, layer, p)
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: %w", image, err)
	}
	out.Digest, out.Added = md, true
	return out, nil
}
