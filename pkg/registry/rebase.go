package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"
	v1 "github.com/regclient/regclient/types/oci/v1"
	"github.com/regclient/regclient/types/platform"
	"github.com/regclient/regclient/types/ref"
)

// Rebase writes image with its old base's layers replaced by newBase's, platform by platform, to target
// (registry/repository) by digest, with edit applied. image and newBase are registry/repository@digest; a base
// may be an index (its image for each platform is used) or an image. The result's layers are the new base's
// followed by image's own; its config's diff IDs and history are rebuilt the same way, the rest of its config
// (labels, environment, user) is image's. Layers are copied registry to registry (mounted within a registry);
// the old base's layers are not copied at all.
//
// Each platform's old base is the first of these that the platform image is built on (its first layers are
// the base's): the base its own manifest names (org.opencontainers.image.base.name and .base.digest, as
// `buildah build --manifest` writes for each platform, and as Overlay, Push and Rebase write), the base the
// index names, and oldBase (registry/repository@digest, or "" for none). A base named by an index digest
// gives its image for the platform. So images built by buildah, by regctl and by this package all rebase.
//
// The error is ErrBaseMismatch when some platform is built on none of them; it names what was tried.
func (c *Client) Rebase(ctx context.Context, image, oldBase, newBase, target string, edit Edit) (Written, error) {
	fail := func(err error) (Written, error) {
		return Written{}, fmt.Errorf("rebase of %s onto %s: %w", image, newBase, err)
	}
	rImg, err := pinnedRef(image)
	if err != nil {
		return fail(err)
	}
	var rOld ref.Ref
	if oldBase != "" {
		if rOld, err = pinnedRef(oldBase); err != nil {
			return fail(err)
		}
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
	mNew, err := c.rc.ManifestGet(ctx, rNew)
	if err != nil {
		return fail(fmt.Errorf("reading %s: %w", newBase, mapErr(err)))
	}
	bases := baseReader{c: c, manifests: map[string]manifest.Manifest{}}
	// The blobs the result needs: each platform's own layers (above the old base) and the new base's.
	var copies []blobCopy
	for _, img := range src.images {
		old, err := bases.oldBase(ctx, src, img, rOld, rNew)
		if err != nil {
			return fail(err)
		}
		nb, err := c.basePlatform(ctx, rNew, mNew, img.oc.Platform)
		if err != nil {
			return fail(err)
		}
		if err := checkBase(nb); err != nil {
			return fail(err)
		}
		if len(img.oc.History) > 0 && len(nb.oc.History) == 0 {
			return fail(fmt.Errorf("the new base %s has no history; the history of %s would not line up with its layers", nb.ref.CommonName(), img.ref.CommonName()))
		}
		img.rebase = &rebasePlan{old: old, new: nb}
		for _, l := range img.layers[len(old.layers):] {
			copies = append(copies, blobCopy{from: src.ref, desc: l})
		}
		for _, l := range nb.layers {
			copies = append(copies, blobCopy{from: rNew, desc: l})
		}
	}
	w, err := c.write(ctx, tr, src, rTgt, copies, ed)
	if err != nil {
		return fail(err)
	}
	return w, nil
}

// rebasePlan is a platform image's move: from old base to new.
type rebasePlan struct {
	old, new *srcImage
}

// baseReader reads bases, each manifest once.
type baseReader struct {
	c         *Client
	manifests map[string]manifest.Manifest // by registry/repository@digest
}

// oldBase finds the old base of a platform image of src: the first of the candidates (see Rebase) the image is
// built on.
func (b *baseReader) oldBase(ctx context.Context, src *source, img *srcImage, given, newBase ref.Ref) (*srcImage, error) {
	var cands []ref.Ref
	for _, m := range []manifest.Manifest{img.m, src.m} {
		if r, ok := annotatedBase(m, newBase); ok && !slices.ContainsFunc(cands, func(c ref.Ref) bool { return sameRef(c, r) }) {
			cands = append(cands, r)
		}
		if !src.m.IsList() {
			break // the image is the top manifest
		}
	}
	if given.Digest != "" && !slices.ContainsFunc(cands, func(c ref.Ref) bool { return sameRef(c, given) }) {
		cands = append(cands, given)
	}
	p := img.oc.Platform
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: cannot tell which base %s of %s is built on: neither it nor its index has a %s annotation, and no old base was given",
			ErrBaseMismatch, platformString(p), img.ref.CommonName(), AnnotationBaseDigest)
	}
	var tried []string
	for _, r := range cands {
		m, err := b.manifest(ctx, r)
		if err != nil {
			return nil, err
		}
		old, err := b.c.basePlatform(ctx, r, m, p)
		if err == nil {
			err = builtOn(img, old)
		}
		if err == nil {
			return old, nil
		}
		tried = append(tried, err.Error())
	}
	return nil, fmt.Errorf("%w: %s (%s) is built on none of its candidate bases: %s", ErrBaseMismatch, img.ref.CommonName(),
		platformString(p), strings.Join(tried, "; "))
}

func (b *baseReader) manifest(ctx context.Context, r ref.Ref) (manifest.Manifest, error) {
	key := r.CommonName()
	if m, ok := b.manifests[key]; ok {
		return m, nil
	}
	m, err := b.c.rc.ManifestGet(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("reading the base %s: %w", key, mapErr(err))
	}
	b.manifests[key] = m
	return m, nil
}

// annotatedBase is the base m's annotations name: the repository of base.name (else fallback's) at
// base.digest.
func annotatedBase(m manifest.Manifest, fallback ref.Ref) (ref.Ref, bool) {
	ma, ok := m.(manifest.Annotator)
	if !ok {
		return ref.Ref{}, false
	}
	annotations, err := ma.GetAnnotations()
	if err != nil {
		return ref.Ref{}, false
	}
	d, err := digest.Parse(annotations[AnnotationBaseDigest])
	if err != nil {
		return ref.Ref{}, false
	}
	r := fallback
	if name := annotations[AnnotationBaseName]; name != "" {
		if nr, err := ref.New(name); err == nil && nr.Scheme == "reg" {
			r = nr
		}
	}
	return r.SetDigest(d.String()), true
}

func sameRef(a, b ref.Ref) bool { return ref.EqualRepository(a, b) && a.Digest == b.Digest }

// basePlatform reads the image of base r (whose manifest is m) for platform p, with its config: r's own image,
// or an index's image for p.
func (c *Client) basePlatform(ctx context.Context, r ref.Ref, m manifest.Manifest, p platform.Platform) (*srcImage, error) {
	desc := m.GetDescriptor()
	if m.IsList() {
		d, err := manifest.GetPlatformDesc(m, &p)
		if err != nil {
			return nil, fmt.Errorf("base %s has no platform %s: %w", r.CommonName(), platformString(p), mapErr(err))
		}
		desc, m, r = *d, nil, r.SetDigest(d.Digest.String())
	}
	return c.readImage(ctx, r, desc, m)
}

// builtOn checks that img is built on old: old's layers are img's first ones, and so are its diff IDs and its
// history entries (the same creation time, author, command and comment), so that the history can be cut
// where the layers are.
func builtOn(img, old *srcImage) error {
	if len(old.layers) > len(img.layers) {
		return fmt.Errorf("%s has %d layers, the base %s has %d", img.ref.CommonName(), len(img.layers), old.ref.CommonName(), len(old.layers))
	}
	for i, l := range old.layers {
		if img.layers[i].Digest != l.Digest {
			return fmt.Errorf("layer %d of %s is %s where the base %s has %s", i, img.ref.CommonName(), img.layers[i].Digest,
				old.ref.CommonName(), l.Digest)
		}
	}
	if err := checkBase(old); err != nil {
		return err
	}
	od, id := old.oc.RootFS.DiffIDs, img.oc.RootFS.DiffIDs
	if len(od) > len(id) || !slices.Equal(id[:len(od)], od) {
		return fmt.Errorf("the diff IDs of %s do not start with those of the base %s", img.ref.CommonName(), old.ref.CommonName())
	}
	oh, ih := old.oc.History, img.oc.History
	if len(oh) == 0 && len(ih) > 0 {
		return fmt.Errorf("the base %s has no history, so the history of %s cannot be cut where its layers are", old.ref.CommonName(), img.ref.CommonName())
	}
	if len(oh) > len(ih) {
		return fmt.Errorf("%s has %d history entries, the base %s has %d", img.ref.CommonName(), len(ih), old.ref.CommonName(), len(oh))
	}
	for i, h := range oh {
		g := ih[i]
		if g.Author != h.Author || g.Comment != h.Comment || g.CreatedBy != h.CreatedBy || g.EmptyLayer != h.EmptyLayer ||
			(g.Created == nil) != (h.Created == nil) || (g.Created != nil && !g.Created.Equal(*h.Created)) {
			return fmt.Errorf("history entry %d of %s differs from the base %s's", i, img.ref.CommonName(), old.ref.CommonName())
		}
	}
	return nil
}

// checkBase checks that a base's config lines up with its layers: a diff ID each, and a history entry each
// (besides empty ones) when it has a history.
func checkBase(b *srcImage) error {
	n := len(b.layers)
	if len(b.oc.RootFS.DiffIDs) != n {
		return fmt.Errorf("the base %s has %d layers and %d diff IDs", b.ref.CommonName(), n, len(b.oc.RootFS.DiffIDs))
	}
	if len(b.oc.History) == 0 {
		return nil
	}
	nonEmpty := 0
	for _, h := range b.oc.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != n {
		return fmt.Errorf("the base %s has %d layers and %d history entries with a layer", b.ref.CommonName(), n, nonEmpty)
	}
	return nil
}

// rebased returns the OCI image manifest m of a platform image moved as plan says, with config as its config:
// the new base's layers, then the image's own.
func rebased(m manifest.Manifest, plan *rebasePlan, config descriptor.Descriptor) (manifest.Manifest, error) {
	om, err := manifest.OCIManifestFromAny(m.GetOrig())
	if err != nil {
		return nil, err
	}
	layers := make([]descriptor.Descriptor, 0, len(plan.new.layers)+len(om.Layers)-len(plan.old.layers))
	for _, l := range plan.new.layers {
		if mt, ok := dockerToOCI[l.MediaType]; ok {
			l.MediaType = mt
		}
		layers = append(layers, l)
	}
	om.Layers = append(layers, om.Layers[len(plan.old.layers):]...)
	om.Config = config
	return manifest.New(manifest.WithOrig(om))
}

// rebasedConfig is img's config moved as its plan says: the new base's diff IDs and history, then img's own.
func rebasedConfig(img *srcImage) v1.Image {
	oc, plan := img.oc, img.rebase
	oc.RootFS.DiffIDs = append(slices.Clone(plan.new.oc.RootFS.DiffIDs), oc.RootFS.DiffIDs[len(plan.old.oc.RootFS.DiffIDs):]...)
	if oc.History != nil || plan.new.oc.History != nil {
		oc.History = append(slices.Clone(plan.new.oc.History), oc.History[len(plan.old.oc.History):]...)
	}
	return oc
}
