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

	// maxPayloadSize bounds a payload read back: cosign's are a few hundred bytes.
	maxPayloadSize = 1 << 20
)

// target is the image a signature is about.
type target struct {
	image      string // as the caller gave it
	repository string // registry/repository
	digest     string
	tag        string // sha256-<hex>.sig
}

// parseTarget parses registry/repository@digest.
func parseTarget(image string) (target, error) {
	r, err := imageref.Parse(image)
	if err != nil {
		return target{}, err
	}
	if r.Digest == "" {
		return target{}, fmt.Errorf("%w %q: want registry/repository@digest", imageref.ErrInvalid, image)
	}
	return target{image: image, repository: r.Name(), digest: r.Digest,
		tag: strings.Replace(r.Digest, ":", "-", 1) + TagSuffix}, nil
}

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
	payload []byte
	sig     []byte
	keyID   string
	// bad says why the layer cannot be checked: no signature, not base64, payload not found.
	bad string
}

// readLayers reads the simple-signing layers of m and their payloads.
func readLayers(ctx context.Context, client *registry.Client, t target, m sigManifest) ([]layer, error) {
	var out []layer
	for _, d := range m.Layers {
		if d.MediaType != MediaTypePayload {
			continue
		}
		l := layer{keyID: d.Annotations[AnnotationKey]}
		b64, ok := d.Annotations[AnnotationSignature]
		if !ok {
			l.bad = "layer " + d.Digest + " has no " + AnnotationSignature + " annotation"
			out = append(out, l)
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			l.bad = "the signature of layer " + d.Digest + " is not base64"
			out = append(out, l)
			continue
		}
		l.sig = sig
		p, err := client.Blob(ctx, t.repository, d.Digest, maxPayloadSize)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			l.bad = "the payload " + d.Digest + " is missing"
		case err != nil:
			return nil, fmt.Errorf("reading the signature payload of %s: %w", t.image, err)
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
