package signature

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/mediatype"
	"github.com/harborflow/harborflow/pkg/registry"
)

// What cosign writes, and reads back.
const (
	// MediaTypePayload is the media type of a simple-signing payload layer.
	MediaTypePayload = "application/vnd.dev.cosign.simplesigning.v1+json"
	// AnnotationSignature holds a layer's signature, base64.
	AnnotationSignature = "dev.cosignproject.cosign/signature"
	// AnnotationKey holds the ID (Verifier.KeyID) of the key Sign signed a layer with; cosign ignores it.
	AnnotationKey = "io.harborflow.signature.key"
	// TagSuffix ends cosign's signature tag, sha256-<hex>.sig.
	TagSuffix = ".sig"
	// AttestationTagSuffix ends cosign's attestation tag, sha256-<hex>.att.
	AttestationTagSuffix = ".att"

	// maxPayloadSize bounds a payload read back: cosign's are a few hundred bytes.
	maxPayloadSize = 1 << 20
)

// target is the image a signature is about.
type target struct {
	image      string // as the caller gave it
	repository string // registry/repository
	digest     string
	tag        string // sha256-<hex>.sig or .att
}

// parseTarget parses registry/repository@digest; the target's tag ends in suffix (TagSuffix,
// AttestationTagSuffix).
func parseTarget(image, suffix string) (target, error) {
	r, err := imageref.Parse(image)
	if err != nil {
		return target{}, err
	}
	if r.Digest == "" {
		return target{}, fmt.Errorf("%w %q: want registry/repository@digest", imageref.ErrInvalid, image)
	}
	return target{image: image, repository: r.Name(), digest: r.Digest, tag: tagOf(r.Digest, suffix)}, nil
}

// AttestationTag is cosign's attestation tag of digest, sha256-<hex>.att, in the digest's repository.
func AttestationTag(digest string) string { return tagOf(digest, AttestationTagSuffix) }

// tagOf is cosign's tag of digest (alg:hex) ending in suffix: alg-hex<suffix>.
func tagOf(digest, suffix string) string { return strings.Replace(digest, ":", "-", 1) + suffix }

// sigManifest is the part of an OCI image manifest a signature manifest uses.
type sigManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
	// Annotations are kept when a layer is added.
	Annotations map[string]string `json:"annotations,omitempty"`

	// digest is the manifest's own digest, when it was read from the registry.
	digest string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// existing reads the manifest under t's signature tag; ok is false when there is none.
func existing(ctx context.Context, client *registry.Client, t target) (m sigManifest, ok bool, err error) {
	d, body, err := client.ManifestBody(ctx, t.repository+":"+t.tag)
	if errors.Is(err, registry.ErrNotFound) {
		return sigManifest{}, false, nil
	}
	if err != nil {
		return sigManifest{}, false, err
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return sigManifest{}, false, fmt.Errorf("decoding the signature manifest %s:%s: %w", t.repository, t.tag, err)
	}
	m.digest = d.Digest
	return m, true, nil
}

// layer is one signature of a signature manifest, read back.
type layer struct {
	// payload is the layer's blob: a simple-signing payload, or a DSSE envelope (which holds its signatures).
	payload []byte
	// sig is a simple-signing payload's signature, from the layer's annotation.
	sig   []byte
	keyID string
	// predicateType is an attestation layer's annotation: what its statement says it is, unverified.
	predicateType string
	// bad says why the layer cannot be checked: no signature, not base64, payload not found.
	bad string
}

// readLayers reads the layers of m of mediaType (MediaTypePayload, MediaTypeDSSE) and their blobs.
func readLayers(ctx context.Context, client *registry.Client, t target, m sigManifest, mediaType string) ([]layer, error) {
	var out []layer
	for _, d := range m.Layers {
		if d.MediaType != mediaType {
			continue
		}
		l := layer{keyID: d.Annotations[AnnotationKey], predicateType: d.Annotations[AnnotationPredicateType]}
		b64, ok := d.Annotations[AnnotationSignature]
		switch {
		case mediaType == MediaTypeDSSE: // signed inside the envelope
		case !ok:
			l.bad = "layer " + d.Digest + " has no " + AnnotationSignature + " annotation"
			out = append(out, l)
			continue
		default:
			sig, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				l.bad = "the signature of layer " + d.Digest + " is not base64"
				out = append(out, l)
				continue
			}
			l.sig = sig
		}
		p, err := client.Blob(ctx, t.repository, d.Digest, maxPayloadSize)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			l.bad = "the payload " + d.Digest + " is missing"
		case err != nil:
			return nil, fmt.Errorf("reading layer %s of %s:%s: %w", d.Digest, t.repository, t.tag, err)
		}
		l.payload = p
		out = append(out, l)
	}
	return out, nil
}

// claims reports whether payload is a cosign payload for digest; when it is not, it says what it is.
func claims(p []byte, digest string) (bool, string) {
	var c payload.Cosign
	if err := json.Unmarshal(p, &c); err != nil {
		return false, fmt.Sprintf("the payload is not a cosign payload: %v", err)
	}
	if got := c.Image.DigestStr(); got != digest {
		return false, "the payload is for " + got
	}
	return true, ""
}

// newPayload is the simple-signing payload of t, as cosign sign writes it: the repository as
// docker-reference, the digest, no optional claims.
func newPayload(t target) ([]byte, error) {
	d, err := name.NewDigest(t.repository+"@"+t.digest, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("naming %s for its payload: %w", t.image, err)
	}
	return json.Marshal(payload.Cosign{Image: d})
}

// config is the image config of a signature manifest, as cosign writes it: no platform, one diff ID per
// layer (a layer's digest, the payload being uncompressed).
func config(layers []descriptor) ([]byte, error) {
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.Digest
	}
	return json.Marshal(map[string]any{
		"architecture": "",
		"os":           "",
		"config":       map[string]any{},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
}

// appendLayer adds blob, as layer l, to m (a new manifest when m is zero) and writes m under t's tag. It
// returns the digest of the manifest written.
func appendLayer(ctx context.Context, client *registry.Client, t target, m sigManifest, l descriptor, blob []byte) (string, error) {
	bd, err := client.PutBlob(ctx, t.repository, l.MediaType, blob)
	if err != nil {
		return "", err
	}
	l.Digest, l.Size = bd.Digest, bd.Size
	m.SchemaVersion, m.MediaType = 2, mediatype.OCIManifest
	m.Layers = append(m.Layers, l)
	cfg, err := config(m.Layers)
	if err != nil {
		return "", fmt.Errorf("encoding the config: %w", err)
	}
	cd, err := client.PutBlob(ctx, t.repository, mediatype.OCIConfig, cfg)
	if err != nil {
		return "", err
	}
	m.Config = descriptor{MediaType: cd.MediaType, Digest: cd.Digest, Size: cd.Size}
	body, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encoding the manifest: %w", err)
	}
	md, err := client.PutManifest(ctx, t.repository, t.tag, mediatype.OCIManifest, body)
	if err != nil {
		return "", err
	}
	return md.Digest, nil
}
