package signature

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/harborflow/harborflow/pkg/mediatype"
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
	t, err := parseTarget(image)
	if err != nil {
		return Signed{}, fmt.Errorf("signing: %w", err)
	}
	out := Signed{Ref: t.repository + ":" + t.tag}
	m, ok, err := existing(ctx, client, t)
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: %w", image, err)
	}
	if ok {
		layers, err := readLayers(ctx, client, t, m)
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
	} else {
		m = sigManifest{SchemaVersion: 2, MediaType: mediatype.OCIManifest}
	}

	p, err := newPayload(t)
	if err != nil {
		return Signed{}, fmt.Errorf("signing: %w", err)
	}
	sig, err := s.sv.SignMessage(bytes.NewReader(p))
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: %w", image, err)
	}
	pd, err := client.PutBlob(ctx, t.repository, MediaTypePayload, p)
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: %w", image, err)
	}
	layer := descriptor{MediaType: MediaTypePayload, Digest: pd.Digest, Size: pd.Size, Annotations: map[string]string{
		AnnotationSignature: base64.StdEncoding.EncodeToString(sig),
		AnnotationKey:       s.pub.id,
	}}
	m.SchemaVersion, m.MediaType = 2, mediatype.OCIManifest
	m.Layers = append(m.Layers, layer)
	cfg, err := config(m.Layers)
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: encoding the config: %w", image, err)
	}
	cd, err := client.PutBlob(ctx, t.repository, mediatype.OCIConfig, cfg)
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: %w", image, err)
	}
	m.Config = descriptor{MediaType: cd.MediaType, Digest: cd.Digest, Size: cd.Size}
	body, err := json.Marshal(m)
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: encoding the signature manifest: %w", image, err)
	}
	md, err := client.PutManifest(ctx, t.repository, t.tag, mediatype.OCIManifest, body)
	if err != nil {
		return Signed{}, fmt.Errorf("signing %s: %w", image, err)
	}
	out.Digest, out.Added = md.Digest, true
	return out, nil
}
