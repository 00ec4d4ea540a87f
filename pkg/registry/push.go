package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/regclient/regclient/types/oci/v1"
	"github.com/regclient/regclient/types/ref"
)

// annotRefName names an image in an OCI layout's index.json.
const annotRefName = "org.opencontainers.image.ref.name"

// Push writes the image or index of the OCI image layout in layoutDir (as `buildah push IMAGE oci:DIR` or
// `buildah manifest push --all LIST oci:DIR` write one) to target (registry/repository) by digest, with edit
// applied. The layout must hold one image or index, or several of which exactly one is named with the
// org.opencontainers.image.ref.name annotation in index.json. The layout is only read.
func (c *Client) Push(ctx context.Context, layoutDir, target string, edit Edit) (Written, error) {
	fail := func(err error) (Written, error) {
		return Written{}, fmt.Errorf("push of layout %s to %s: %w", layoutDir, target, err)
	}
	rTgt, ed, want, err := writeTo(target, edit)
	if err != nil {
		return fail(err)
	}
	dig, err := layoutImage(layoutDir)
	if err != nil {
		return fail(err)
	}

	ctx, tr := withTransfer(ctx)
	src, err := c.readSource(ctx, ref.Ref{Scheme: "ocidir", Path: layoutDir}.SetDigest(dig.String()), want)
	if err != nil {
		return fail(err)
	}
	w, err := c.write(ctx, tr, src, rTgt, src.imageLayers(), ed)
	if err != nil {
		return fail(err)
	}
	return w, nil
}

// layoutImage picks the digest of the image to push from the layout's index.json.
func layoutImage(dir string) (digest.Digest, error) {
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return "", fmt.Errorf("OCI layout %q: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return "", fmt.Errorf("OCI layout %q: %w", dir, err)
	}
	var idx v1.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return "", fmt.Errorf("OCI layout %q: index.json: %w", dir, err)
	}
	var pick []digest.Digest
	switch len(idx.Manifests) {
	case 0:
		return "", fmt.Errorf("OCI layout %q holds no image", dir)
	case 1:
		pick = []digest.Digest{idx.Manifests[0].Digest}
	default:
		for _, d := range idx.Manifests {
			if d.Annotations[annotRefName] != "" && !slices.Contains(pick, d.Digest) {
				pick = append(pick, d.Digest)
			}
		}
	}
	if len(pick) != 1 {
		var names []string
		for _, d := range idx.Manifests {
			names = append(names, fmt.Sprintf("%s (%q)", d.Digest, d.Annotations[annotRefName]))
		}
		return "", fmt.Errorf("OCI layout %q holds %d images: %s; want one, or one named with %s",
			dir, len(idx.Manifests), strings.Join(names, ", "), annotRefName)
	}
	if err := pick[0].Validate(); err != nil {
		return "", fmt.Errorf("OCI layout %q: digest %q: %w", dir, pick[0], err)
	}
	return pick[0], nil
}
