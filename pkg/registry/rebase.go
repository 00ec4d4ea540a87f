package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/regclient/regclient/mod"
	"github.com/regclient/regclient/types/errs"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/platform"
	"github.com/regclient/regclient/types/ref"
)

// Rebase writes image with its oldBase layers replaced by newBase's, platform by platform (all three are
// registry/repository@digest; a base may be an index or an image), to target (registry/repository) by
// digest, with edit applied. The result's layers are newBase's followed by image's own; its config history
// and diff IDs are rebuilt the same way. Layers are copied registry to registry (mounted within a
// registry); the old base's layers are not copied at all.
//
// The error is ErrBaseMismatch when image is not built on oldBase: oldBase's layers (or, as regclient
// checks too, its history and diff IDs) are not the first ones of image, for some platform.
func (c *Client) Rebase(ctx context.Context, image, oldBase, newBase, target string, edit Edit) (Written, error) {
	fail := func(err error) (Written, error) {
		return Written{}, fmt.Errorf("rebase of %s from %s to %s: %w", image, oldBase, newBase, err)
	}
	rImg, err := pinnedRef(image)
	if err != nil {
		return fail(err)
	}
	rOld, err := pinnedRef(oldBase)
	if err != nil {
		return fail(err)
	}
	rNew, err := pinnedRef(newBase)
	if err != nil {
		return fail(err)
	}
	rTgt, ed, want, err := writeTo(target, edit)
	if err != nil {
		return fail(err)
	}

	ctx, tr := withTransfer(ctx)
	src, err := c.readSource(ctx, rImg, want)
	if err != nil {
		return fail(err)
	}
	mOld, err := c.rc.ManifestGet(ctx, rOld)
	if err != nil {
		return fail(fmt.Errorf("reading %s: %w", oldBase, mapErr(err)))
	}
	mNew, err := c.rc.ManifestGet(ctx, rNew)
	if err != nil {
		return fail(fmt.Errorf("reading %s: %w", newBase, mapErr(err)))
	}
	// The blobs the result needs: each platform's own layers (above the old base) and the new base's.
	var copies []blobCopy
	for _, img := range src.images {
		// mod.WithRebaseRefs looks the bases' platforms up by the image config's platform; so does this.
		p := img.oc.Platform
		old, err := c.basePlatform(ctx, rOld, mOld, p, true)
		if err != nil {
			return fail(err)
		}
		if err := builtOn(img, old); err != nil {
			return fail(err)
		}
		nb, err := c.basePlatform(ctx, rNew, mNew, p, false)
		if err != nil {
			return fail(err)
		}
		for _, l := range img.layers[len(old.layers):] {
			copies = append(copies, blobCopy{from: src.ref, desc: l})
		}
		for _, l := range nb.layers {
			copies = append(copies, blobCopy{from: rNew, desc: l})
		}
	}
	w, err := c.write(ctx, tr, src, rTgt, copies, ed, func() ([]mod.Opts, error) {
		return []mod.Opts{mod.WithRebaseRefs(rOld, rNew)}, nil
	})
	if errors.Is(err, errs.ErrMismatch) {
		err = &kindError{kind: ErrBaseMismatch, err: err}
	}
	if err != nil {
		return fail(err)
	}
	return w, nil
}

// basePlatform reads the image of base (whose manifest is m) for platform p: its manifest, and its config
// when withConfig.
func (c *Client) basePlatform(ctx context.Context, r ref.Ref, m manifest.Manifest, p platform.Platform, withConfig bool) (*srcImage, error) {
	desc := m.GetDescriptor()
	if m.IsList() {
		d, err := manifest.GetPlatformDesc(m, &p)
		if err != nil {
			return nil, fmt.Errorf("base %s has no platform %s: %w", r.CommonName(), platformString(p), mapErr(err))
		}
		desc, m, r = *d, nil, r.SetDigest(d.Digest.String())
	}
	if withConfig {
		return c.readImage(ctx, r, desc, m)
	}
	m, mi, err := c.imageManifest(ctx, r, m)
	if err != nil {
		return nil, err
	}
	layers, err := mi.GetLayers()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r.CommonName(), err)
	}
	return &srcImage{ref: r, desc: desc, m: m, layers: layers}, nil
}

// builtOn checks that old's layers are the first of img's, and that the history entries regclient compares
// have a creation time (regclient dereferences it without a check).
func builtOn(img, old *srcImage) error {
	if len(old.layers) > len(img.layers) {
		return fmt.Errorf("%w: %s has %d layers, its base %s has %d", ErrBaseMismatch, img.ref.CommonName(), len(img.layers),
			old.ref.CommonName(), len(old.layers))
	}
	for i, l := range old.layers {
		if img.layers[i].Digest != l.Digest {
			return fmt.Errorf("%w: layer %d of %s is %s where the base %s has %s", ErrBaseMismatch, i, img.ref.CommonName(),
				img.layers[i].Digest, old.ref.CommonName(), l.Digest)
		}
	}
	for i, h := range old.oc.History {
		if h.Created == nil || (i < len(img.oc.History) && img.oc.History[i].Created == nil) {
			return fmt.Errorf("history entry %d of %s or of its base %s has no creation time; it cannot be rebased",
				i, img.ref.CommonName(), old.ref.CommonName())
		}
	}
	return nil
}
