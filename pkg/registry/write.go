package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/mod"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/mediatype"
	v1 "github.com/regclient/regclient/types/oci/v1"
	"github.com/regclient/regclient/types/platform"
	"github.com/regclient/regclient/types/ref"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/logging"
	hfplatform "github.com/harborflow/harborflow/pkg/platform"
)

// Writes.
//
// Overlay, Rebase and Push write an image to a target repository by digest only, never under a tag, so that
// no tag points at an image whose parts are still being pushed; Tag names the finished image afterwards.
// Each write runs in four steps:
//
//  1. read the source's manifests and image configs, keeping the platforms the Edit asks for (and dropping
//     what is not a platform image: buildx attestations, unknown/unknown entries, nested indexes);
//  2. stage those manifests and configs, and an index listing only the kept platforms, in a temporary OCI
//     layout (no layer is downloaded for this), with what the write changes in them: an overlay's added layer
//     with its diff ID and history entry, a rebase's move to the new base's layers, diff IDs and history, and
//     the base annotations of each manifest;
//  3. copy the layers the result keeps into the target repository, concurrently: a cross-repository mount
//     when source and target are on the same registry (nothing is downloaded), a download and an upload
//     otherwise, nothing when the target already has the blob; an added layer from its file;
//  4. let regclient's mod.Apply edit the staged image and push it to the target: new configs, then each
//     platform manifest, then the index.
//
// Steps 3 and 4 are tried again when the registry answers ErrIncompleteWrite.
//
// Why a stage: mod has no option that drops an index entry (a platform not asked for, or a buildx
// attestation, whose vnd.docker.reference.digest would name a platform manifest the edit replaced), and it
// edits and copies every entry of the index it is given; its layer addition dates the new history entry with
// the time the process started, and its rebase takes one old base for every platform. Given the stage, mod sees
// only the kept platforms, each already in its final shape but for the edit. mod copies each layer from its
// source (the stage, which holds no layers) after a HEAD on the target; step 3 has put them there, so mod
// skips them.
//
// Tagless pushing: mod.Apply pushes the top manifest by digest when the target reference has no tag
// (dagPut: `if rPut.Tag == "" || rPut.Digest != "" { rPut = rPut.AddDigest(...) }`) and children always by
// digest. A "registry/repository" in regclient's form names the tag "latest" (imageref.Ref.RegClient defaults
// it, as ref.New does), which mod.Apply would push the image under, so targetRef clears it with SetTag(""). Nothing else a write does
// creates a tag: blobs have none, and the staged manifests carry no subject, so regclient pushes no
// referrers fallback tag either.

// Edit is what every write applies to the image it writes.
type Edit struct {
	// Labels are set in the config of every platform; an empty value removes the label.
	Labels map[string]string
	// Annotations are set on every manifest written: the index and each platform manifest; an empty value
	// removes the annotation.
	Annotations map[string]string
	// Env is set in the config of every platform (NAME → value); an empty value removes the variable.
	Env map[string]string
	// Platforms are the os/arch[/variant] to keep; empty keeps every platform of the source. A platform the
	// source does not have is an error naming it. Whatever is not a platform image (buildx attestation
	// manifests, unknown/unknown entries, nested indexes) is never written.
	Platforms []string
	// BaseName (registry/repository:tag, a reference that resolves to BaseDigest) and BaseDigest (the base's
	// index, or its image) name the base in the annotations org.opencontainers.image.base.name and
	// org.opencontainers.image.base.digest of the manifest written on top (an index, or the one image); each
	// platform manifest of an index gets BaseName and the digest of the base's image for its platform, as
	// `buildah build --manifest` writes them, so that a rebase finds every platform's old base.
	// `regctl image check-base` reads the top manifest's. Give both or neither.
	BaseName   string
	BaseDigest string
}

// Written is an image the client wrote, by digest only (no tag).
type Written struct {
	// Ref is target@digest.
	Ref string
	// Digest and MediaType describe the manifest written: an OCI index when the source was an index, an OCI
	// image manifest otherwise. Docker media types are converted to OCI ones, because annotations are not
	// part of Docker's schema 2.
	Digest    string
	MediaType string
	// Platforms are the os/arch[/variant] of each platform written, in index order.
	Platforms []string
	// BytesRead is the blob bytes this call downloaded from registries (bodies of blob GETs: image configs,
	// and layers copied between registries); BytesWritten the blob bytes it uploaded. Mounts and blobs the
	// target already had count nothing; reads from an OCI layout count nothing.
	BytesRead    int64
	BytesWritten int64
}

// Tag points tag at the manifest image (registry/repository@digest) names: the manifest's own bytes are
// PUT under the tag, so the digest stays the same. The manifest is read once per client, registry and digest
// (it cannot change), from whichever repository of the registry it was read. The error is ErrNotFound when the
// client never read the manifest and the registry does not have it; a manifest the client read before is put
// as it was — back, if it was deleted since, while the registry still has its blobs — and one read from
// another repository whose blobs this one lacks is refused by the registry's PUT. Callers tag what they have
// just written or checked.
func (c *Client) Tag(ctx context.Context, image, tag string) error {
	r, err := pinnedRef(image)
	if err != nil {
		return opError("tagging as "+tag, image, err)
	}
	if !imageref.IsTag(tag) {
		return fmt.Errorf("tagging %s: %w: tag %q", image, ErrInvalidReference, tag)
	}
	// The manifest by digest is immutable: read once per client and registry, from any of its repositories
	// (a promotion's copy has it from the source), and put under each tag.
	cm, ok := c.bodies.get(r.Registry + "@" + r.Digest)
	if !ok {
		var err error
		if cm, err = c.fetchManifest(ctx, r); err != nil {
			return opError("tagging as "+tag, image, err)
		}
	}
	m, err := manifest.New(manifest.WithRaw(cm.raw), manifest.WithDesc(descriptor.Descriptor{
		MediaType: cm.desc.MediaType, Digest: digest.Digest(cm.desc.Digest), Size: cm.desc.Size}))
	if err != nil {
		return opError("tagging as "+tag, image, err)
	}
	if err := c.rc.ManifestPut(ctx, r.SetTag(tag), m); err != nil {
		return fmt.Errorf("tagging %s as %s: %w", image, tag, mapErr(err))
	}
	return nil
}

// PutManifest puts a manifest body, byte for byte, into repository (registry/repository) under its digest, or
// under tag when tag is set; the registry must have the blobs (and, for an index, the children) it names.
func (c *Client) PutManifest(ctx context.Context, repository, tag string, mediaType string, body []byte) (Descriptor, error) {
	r, err := targetRef(repository)
	if err != nil {
		return Descriptor{}, opError("putting a manifest into", repository, err)
	}
	d := Descriptor{Digest: digest.FromBytes(body).String(), MediaType: mediaType, Size: int64(len(body))}
	if tag != "" {
		r = r.SetTag(tag)
	} else {
		r = r.SetDigest(d.Digest)
	}
	m, err := manifest.New(manifest.WithRaw(body), manifest.WithDesc(descriptor.Descriptor{
		MediaType: mediaType, Digest: digest.Digest(d.Digest), Size: d.Size}))
	if err != nil {
		return Descriptor{}, opError("putting a manifest into", repository, err)
	}
	if err := c.rc.ManifestPut(ctx, r, m); err != nil {
		return Descriptor{}, fmt.Errorf("putting manifest %s into %s: %w", d.Digest, repository, mapErr(err))
	}
	return d, nil
}

// pinnedRef parses registry/repository[:tag]@digest, refusing a reference without a digest.
func pinnedRef(s string) (ref.Ref, error) {
	r, err := parseRef(s)
	if err != nil {
		return ref.Ref{}, err
	}
	if r.Digest == "" {
		return ref.Ref{}, fmt.Errorf("%w %q: want registry/repository@digest", ErrInvalidReference, s)
	}
	return r, nil
}

// targetRef parses registry/repository, refusing a tag or a digest, and returns it without a tag (see
// "Tagless pushing" above).
func targetRef(s string) (ref.Ref, error) {
	r, err := imageref.ParseRepository(s)
	if err != nil {
		return ref.Ref{}, err
	}
	return r.RegClient().SetTag(""), nil
}

// edits is an Edit made ready for a write: mod options, and the base to name in the annotations.
type edits struct {
	opts       []mod.Opts
	baseName   string // the base's reference as regclient names it (CommonName); "" for none
	baseRepo   ref.Ref
	baseDigest string
}

// writeTo checks what every write starts from: the target repository, the edit, and the platforms the edit
// keeps.
func writeTo(target string, edit Edit) (ref.Ref, edits, []platform.Platform, error) {
	rTgt, err := targetRef(target)
	if err != nil {
		return ref.Ref{}, edits{}, nil, err
	}
	ed, err := edit.edits()
	if err != nil {
		return ref.Ref{}, edits{}, nil, err
	}
	want, err := edit.platforms()
	if err != nil {
		return ref.Ref{}, edits{}, nil, err
	}
	return rTgt, ed, want, nil
}

// edits turns the edit into regclient mod options, and checks the base's name and digest. Names get the
// platform selector "[*]" (every manifest, every config), which also keeps a name that starts with "[" from
// being read as a selector.
func (e Edit) edits() (edits, error) {
	var ed edits
	for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
		if k == "" {
			return edits{}, errors.New("edit: empty label name")
		}
		ed.opts = append(ed.opts, mod.WithLabel("[*]"+k, e.Labels[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Env)) {
		if k == "" || strings.Contains(k, "=") {
			return edits{}, fmt.Errorf("edit: environment variable name %q", k)
		}
		ed.opts = append(ed.opts, mod.WithEnv("[*]"+k, e.Env[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Annotations)) {
		if k == "" {
			return edits{}, errors.New("edit: empty annotation name")
		}
		ed.opts = append(ed.opts, mod.WithAnnotation("[*]"+k, e.Annotations[k]))
	}
	switch {
	case e.BaseName == "" && e.BaseDigest == "":
	case e.BaseName == "" || e.BaseDigest == "":
		return edits{}, fmt.Errorf("edit: base name %q and base digest %q: give both or neither", e.BaseName, e.BaseDigest)
	default:
		rb, err := ref.New(e.BaseName)
		if err != nil || rb.Scheme != "reg" {
			return edits{}, fmt.Errorf("edit: base name %q: %w", e.BaseName, ErrInvalidReference)
		}
		d, err := digest.Parse(e.BaseDigest)
		if err != nil {
			return edits{}, fmt.Errorf("edit: base digest %q: %w", e.BaseDigest, err)
		}
		ed.baseName, ed.baseRepo, ed.baseDigest = rb.CommonName(), rb.SetDigest(d.String()), d.String()
	}
	return ed, nil
}

// platforms parses Platforms.
func (e Edit) platforms() ([]platform.Platform, error) {
	out := make([]platform.Platform, 0, len(e.Platforms))
	for _, s := range e.Platforms {
		p, err := platform.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("edit: platform %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// source is the image a write starts from: its top manifest and the platform images the write keeps.
type source struct {
	ref     ref.Ref // registry or OCI layout, with the top manifest's digest
	m       manifest.Manifest
	images  []*srcImage // an index's kept entries in index order; for an image, the image itself
	dropped bool        // an entry of the index was left out
	// annotations are set on the staged top manifest; each image's own on its staged manifest.
	annotations map[string]string
}

// srcImage is one platform image of a source.
type srcImage struct {
	ref    ref.Ref               // the image manifest, by digest
	desc   descriptor.Descriptor // the index's entry (with its platform); for an image, its own descriptor
	m      manifest.Manifest
	layers []descriptor.Descriptor
	cdesc  descriptor.Descriptor
	config []byte   // as read
	oc     v1.Image // decoded
	// annotations are set on the image's staged manifest.
	annotations map[string]string
	// add, when not nil, is a layer to add on top (an overlay): staged with the image, with its diff ID and
	// history entry in a new config. rebase, when not nil, is a move to another base (a rebase): staged with
	// the new base's layers, diff IDs and history in place of the old one's. At most one of them is set.
	add    *addedLayer
	rebase *rebasePlan
}

// platform is the image's platform: the index entry's, or else the config's.
func (img *srcImage) platform() platform.Platform {
	if img.desc.Platform != nil {
		return *img.desc.Platform
	}
	return img.oc.Platform
}

// platformString is os/arch[/variant] as the manifest or config gives it.
func platformString(p platform.Platform) string {
	return hfplatform.Format(p.OS, p.Architecture, p.Variant)
}

// readSource reads r's manifest and, for each platform image kept (every one, or those matching want),
// its manifest and config.
func (c *Client) readSource(ctx context.Context, r ref.Ref, want []platform.Platform) (*source, error) {
	m, err := c.rc.ManifestGet(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r.CommonName(), mapErr(err))
	}
	s := &source{ref: r, m: m}
	if !m.IsList() {
		img, err := c.readImage(ctx, r, m.GetDescriptor(), m)
		if err != nil {
			return nil, err
		}
		s.images = []*srcImage{img}
		if err := checkPlatforms(r, s.images, want); err != nil {
			return nil, err
		}
		return s, nil
	}
	mi, ok := m.(manifest.Indexer)
	if !ok {
		return nil, fmt.Errorf("reading %s: %s is not an index", r.CommonName(), m.GetDescriptor().MediaType)
	}
	list, err := mi.GetManifestList()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r.CommonName(), err)
	}
	var keep []descriptor.Descriptor
	for _, d := range list {
		if isPlatformImage(d) && (len(want) == 0 || slices.ContainsFunc(want, func(w platform.Platform) bool { return platform.Match(*d.Platform, w) })) {
			keep = append(keep, d)
		} else {
			s.dropped = true
		}
	}
	s.images = make([]*srcImage, len(keep))
	for i, d := range keep {
		s.images[i] = &srcImage{desc: d}
	}
	if err := checkPlatforms(r, s.images, want); err != nil {
		return nil, err
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("reading %s: the index has no platform image", r.CommonName())
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, d := range keep {
		g.Go(func() error {
			img, err := c.readImage(gctx, r.SetDigest(d.Digest.String()), d, nil)
			if err == nil {
				s.images[i] = img
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return s, nil
}

// isPlatformImage reports whether an index entry is an image for a platform: not a buildx attestation
// manifest, not unknown/unknown or without a platform, not a nested index or an artifact.
func isPlatformImage(d descriptor.Descriptor) bool {
	switch {
	case d.Platform == nil || d.Platform.OS == "" || d.Platform.OS == "unknown",
		d.Annotations[annotDockerRefType] == dockerAttestManifst:
		return false
	}
	return d.MediaType == mediatype.OCI1Manifest || d.MediaType == mediatype.Docker2Manifest
}

// checkPlatforms fails when a wanted platform is not among the images.
func checkPlatforms(r ref.Ref, imgs []*srcImage, want []platform.Platform) error {
	for _, w := range want {
		if !slices.ContainsFunc(imgs, func(img *srcImage) bool { return platform.Match(img.platform(), w) }) {
			have := make([]string, len(imgs))
			for i, img := range imgs {
				have[i] = platformString(img.platform())
			}
			return fmt.Errorf("%s has no platform %s (it has %s)", r.CommonName(), platformString(w), strings.Join(have, ", "))
		}
	}
	return nil
}

// imageManifest reads the manifest r names, unless the caller has it (m), and checks that it is an image
// manifest.
func (c *Client) imageManifest(ctx context.Context, r ref.Ref, m manifest.Manifest) (manifest.Manifest, manifest.Imager, error) {
	if m == nil {
		var err error
		if m, err = c.rc.ManifestGet(ctx, r); err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", r.CommonName(), mapErr(err))
		}
	}
	mi, ok := m.(manifest.Imager)
	if !ok || m.IsList() {
		return nil, nil, fmt.Errorf("reading %s: %s is not an image manifest", r.CommonName(), m.GetDescriptor().MediaType)
	}
	return m, mi, nil
}

// readImage reads the image manifest r names (m, when the caller has it already) and its config.
func (c *Client) readImage(ctx context.Context, r ref.Ref, desc descriptor.Descriptor, m manifest.Manifest) (*srcImage, error) {
	m, mi, err := c.imageManifest(ctx, r, m)
	if err != nil {
		return nil, err
	}
	cd, err := mi.GetConfig()
	if err != nil || !isImageConfig(cd.MediaType) {
		return nil, fmt.Errorf("reading %s: not an image (config %s)", r.CommonName(), cd.MediaType)
	}
	if cd.Size > maxConfigSize {
		return nil, fmt.Errorf("reading %s: image config %s is %d bytes, over the limit of %d", r.CommonName(), cd.Digest, cd.Size, maxConfigSize)
	}
	layers, err := mi.GetLayers()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r.CommonName(), err)
	}
	oc, err := c.rc.BlobGetOCIConfig(ctx, r, cd)
	if err != nil {
		return nil, fmt.Errorf("reading %s: image config %s: %w", r.CommonName(), cd.Digest, mapErr(err))
	}
	raw, err := oc.RawBody()
	if err != nil {
		return nil, fmt.Errorf("reading %s: image config %s: %w", r.CommonName(), cd.Digest, err)
	}
	return &srcImage{ref: r, desc: desc, m: m, layers: layers, cdesc: cd, config: raw, oc: oc.GetConfig()}, nil
}

// stage writes the source's kept manifests and configs into a staging OCI layout, with an index listing
// only the kept platforms when the source is an index, and returns the layout's reference to the top
// manifest. Docker schema 2 images are staged with OCI media types (see ociImage). release empties the
// layout for the next write.
func (c *Client) stage(ctx context.Context, s *source) (_ ref.Ref, release func(), err error) {
	dir, err := c.stages.get()
	if err != nil {
		return ref.Ref{}, nil, err
	}
	defer func() {
		if err != nil {
			c.stages.put(dir)
		}
	}()
	st := ref.Ref{Scheme: "ocidir", Path: dir}
	entries := make([]descriptor.Descriptor, len(s.images))
	changed := s.dropped
	var top manifest.Manifest
	for i, img := range s.images {
		cdesc, config := img.cdesc, img.config
		switch {
		case img.add != nil:
			cdesc, config, err = addedConfig(img)
		case img.rebase != nil:
			cdesc, config, err = configBlob(img.cdesc.MediaType, rebasedConfig(img))
		}
		if err != nil {
			return ref.Ref{}, nil, fmt.Errorf("staging the config of %s: %w", img.ref.CommonName(), err)
		}
		if _, err := c.rc.BlobPut(ctx, st, cdesc, bytes.NewReader(config)); err != nil {
			return ref.Ref{}, nil, fmt.Errorf("staging image config %s: %w", cdesc.Digest, err)
		}
		m, err := ociImage(img.m)
		switch {
		case err != nil:
		case img.add != nil:
			m, err = withLayer(m, cdesc, img.add.desc)
		case img.rebase != nil:
			m, err = rebased(m, img.rebase, cdesc)
		}
		if err == nil && len(img.annotations) > 0 {
			m, err = annotated(m, img.annotations)
		}
		if err != nil {
			return ref.Ref{}, nil, fmt.Errorf("staging manifest %s: %w", img.m.GetDescriptor().Digest, err)
		}
		d := m.GetDescriptor()
		if err := c.rc.ManifestPut(ctx, st.SetDigest(d.Digest.String()), m, regclient.WithManifestChild()); err != nil {
			return ref.Ref{}, nil, fmt.Errorf("staging manifest %s: %w", d.Digest, err)
		}
		entries[i] = img.desc
		if m != img.m {
			entries[i].MediaType, entries[i].Digest, entries[i].Size = d.MediaType, d.Digest, d.Size
			changed = true
		}
		top = m
	}
	if s.m.IsList() {
		top = s.m
		if changed || len(s.annotations) > 0 {
			idx, err := manifest.OCIIndexFromAny(s.m.GetOrig())
			if err != nil {
				return ref.Ref{}, nil, fmt.Errorf("staging the index: %w", err)
			}
			idx.MediaType = mediatype.OCI1ManifestList
			idx.Manifests = entries
			if len(s.annotations) > 0 {
				idx.Annotations = maps.Clone(idx.Annotations)
				if idx.Annotations == nil {
					idx.Annotations = map[string]string{}
				}
				maps.Copy(idx.Annotations, s.annotations)
			}
			if top, err = manifest.New(manifest.WithOrig(idx)); err != nil {
				return ref.Ref{}, nil, fmt.Errorf("staging the index: %w", err)
			}
		}
		d := top.GetDescriptor().Digest.String()
		if err := c.rc.ManifestPut(ctx, st.SetDigest(d), top); err != nil {
			return ref.Ref{}, nil, fmt.Errorf("staging index %s: %w", d, err)
		}
	}
	return st.SetDigest(top.GetDescriptor().Digest.String()), func() { c.stages.put(dir) }, nil
}

// dockerToOCI maps Docker schema 2 layer media types to OCI ones.
var dockerToOCI = map[string]string{
	mediatype.Docker2Layer:        mediatype.OCI1Layer,
	mediatype.Docker2LayerGzip:    mediatype.OCI1LayerGzip,
	mediatype.Docker2LayerZstd:    mediatype.OCI1LayerZstd,
	mediatype.Docker2ForeignLayer: mediatype.OCI1ForeignLayerGzip,
}

// ociImage returns m with OCI media types when it is a Docker schema 2 image: an OCI image manifest, an OCI
// config media type (the config's JSON, and so its digest, stays the same) and OCI layer media types. The
// write also gives mod.Apply mod.WithManifestToOCI, but when mod edits a config it writes the config's media
// type as it read it back into the manifest, which would leave a Docker config in an OCI manifest; staged
// as OCI, the config is read as OCI.
func ociImage(m manifest.Manifest) (manifest.Manifest, error) {
	if m.GetDescriptor().MediaType != mediatype.Docker2Manifest {
		return m, nil
	}
	om, err := manifest.OCIManifestFromAny(m.GetOrig())
	if err != nil {
		return nil, err
	}
	om.MediaType = mediatype.OCI1Manifest
	if om.Config.MediaType == mediatype.Docker2ImageConfig {
		om.Config.MediaType = mediatype.OCI1ImageConfig
	}
	om.Layers = slices.Clone(om.Layers)
	for i, l := range om.Layers {
		if mt, ok := dockerToOCI[l.MediaType]; ok {
			om.Layers[i].MediaType = mt
		}
	}
	return manifest.New(manifest.WithOrig(om))
}

// addedConfig returns img's config with its added layer's diff ID and history entry, and its descriptor. The
// layer itself is pushed from its file (a blobCopy with file).
func addedConfig(img *srcImage) (descriptor.Descriptor, []byte, error) {
	l := img.add
	oc := img.oc
	oc.RootFS.DiffIDs = append(slices.Clone(oc.RootFS.DiffIDs), l.diffID)
	if oc.History != nil {
		// A config without history stays without: an entry for the new layer alone would not line up.
		oc.History = append(slices.Clone(oc.History), l.history)
	}
	return configBlob(img.cdesc.MediaType, oc)
}

// configBlob encodes a changed image config, staged with an OCI media type (see ociImage).
func configBlob(mt string, oc v1.Image) (descriptor.Descriptor, []byte, error) {
	raw, err := json.Marshal(oc)
	if err != nil {
		return descriptor.Descriptor{}, nil, err
	}
	if mt == mediatype.Docker2ImageConfig {
		mt = mediatype.OCI1ImageConfig
	}
	return descriptor.Descriptor{MediaType: mt, Digest: digest.FromBytes(raw), Size: int64(len(raw))}, raw, nil
}

// withLayer returns the OCI image manifest m with config as its config and layer added on top.
func withLayer(m manifest.Manifest, config, layer descriptor.Descriptor) (manifest.Manifest, error) {
	om, err := manifest.OCIManifestFromAny(m.GetOrig())
	if err != nil {
		return nil, err
	}
	om.Config = config
	om.Layers = append(slices.Clone(om.Layers), layer)
	return manifest.New(manifest.WithOrig(om))
}

// annotated returns the OCI image manifest m with annotations set.
func annotated(m manifest.Manifest, annotations map[string]string) (manifest.Manifest, error) {
	om, err := manifest.OCIManifestFromAny(m.GetOrig())
	if err != nil {
		return nil, err
	}
	om.Annotations = maps.Clone(om.Annotations)
	if om.Annotations == nil {
		om.Annotations = map[string]string{}
	}
	maps.Copy(om.Annotations, annotations)
	return manifest.New(manifest.WithOrig(om))
}

// annotateBase gives the source's manifests the annotations of the base (see Edit.BaseName): the top one the
// base's name and digest, each platform image of an index the base's name and the digest of the base's image
// for the platform (the image's own config platform). The source itself may be the base (an overlay), whose
// platform images are then their own bases' images; otherwise the base is read.
func (c *Client) annotateBase(ctx context.Context, s *source, ed edits) error {
	if ed.baseDigest == "" {
		return nil
	}
	s.annotations = map[string]string{AnnotationBaseName: ed.baseName, AnnotationBaseDigest: ed.baseDigest}
	if !s.m.IsList() {
		s.images[0].annotations = s.annotations
		return nil
	}
	if s.ref.Scheme == "reg" && ref.EqualRepository(s.ref, ed.baseRepo) && s.ref.Digest == ed.baseDigest {
		for _, img := range s.images {
			img.annotations = map[string]string{AnnotationBaseName: ed.baseName, AnnotationBaseDigest: img.desc.Digest.String()}
		}
		return nil
	}
	bm, err := c.rc.ManifestGet(ctx, ed.baseRepo)
	if err != nil {
		return fmt.Errorf("reading the base %s: %w", ed.baseRepo.CommonName(), mapErr(err))
	}
	for _, img := range s.images {
		d := ed.baseDigest
		if bm.IsList() {
			p := img.oc.Platform
			pd, err := manifest.GetPlatformDesc(bm, &p)
			if err != nil {
				return fmt.Errorf("the base %s has no platform %s: %w", ed.baseRepo.CommonName(), platformString(p), mapErr(err))
			}
			d = pd.Digest.String()
		}
		img.annotations = map[string]string{AnnotationBaseName: ed.baseName, AnnotationBaseDigest: d}
	}
	return nil
}

// blobCopy is a blob the target needs, and where it is: in a repository, or in a file (a layer the write
// made).
type blobCopy struct {
	from ref.Ref
	file *os.File
	desc descriptor.Descriptor
}

// copyBlobs copies blobs into the target repository concurrently (regclient bounds the requests per host):
// nothing when the target has the blob, a mount from the same registry, a download and an upload
// otherwise. Foreign layers (with URLs) are left where they are, as mod.Apply leaves them. trees, when not
// nil, reads the trees of the base layers a copy downloads.
func (c *Client) copyBlobs(ctx context.Context, tgt ref.Ref, copies []blobCopy, trees *baseTrees) error {
	seen := map[digest.Digest]bool{}
	uniq := copies[:0:0]
	for _, b := range copies {
		if seen[b.desc.Digest] || len(b.desc.URLs) > 0 {
			continue
		}
		seen[b.desc.Digest] = true
		uniq = append(uniq, b)
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, b := range uniq {
		g.Go(func() error {
			if b.file != nil {
				return c.putFile(ctx, tgt, b)
			}
			var opts []regclient.BlobOpts
			hook, finish := trees.tee(ctx, b.desc)
			if hook != nil {
				opts = append(opts, hook)
			}
			err := c.rc.BlobCopy(ctx, b.from, tgt, b.desc, opts...)
			finish(err)
			if err != nil {
				return fmt.Errorf("copying layer %s to %s: %w", b.desc.Digest, tgt.CommonName(), mapErr(err))
			}
			return nil
		})
	}
	return g.Wait()
}

// writeAttempts bounds how often one write is tried when the registry answers ErrIncompleteWrite, and
// writeRetryDelay is the pause before the second attempt (doubled before each later one).
const (
	writeAttempts   = 3
	writeRetryDelay = 200 * time.Millisecond
)

// putFile uploads a blob from its file unless the target has it.
func (c *Client) putFile(ctx context.Context, tgt ref.Ref, b blobCopy) error {
	if rd, err := c.rc.BlobHead(ctx, tgt, b.desc); err == nil {
		_ = rd.Close()
		return nil
	}
	if _, err := b.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("uploading layer %s: %w", b.desc.Digest, err)
	}
	if _, err := c.rc.BlobPut(ctx, tgt, b.desc, b.file); err != nil {
		return fmt.Errorf("uploading layer %s to %s: %w", b.desc.Digest, tgt.CommonName(), mapErr(err))
	}
	return nil
}

// write stages the source, copies blobs into the target, and applies the conversion to OCI media types and
// the edit with mod.Apply, pushing the result to the target by digest.
//
// An answer that an interrupted write leaves behind (ErrIncompleteWrite: a blob or child manifest the
// registry lacks or cannot read, an upload session it forgot) is met by writing again: every blob is checked
// and what is missing pushed again, then every manifest. A write that still fails after writeAttempts returns
// the error, which is retryable: the caller's redelivery writes again later.
func (c *Client) write(ctx context.Context, tr *transfer, s *source, tgt ref.Ref, copies []blobCopy, ed edits) (Written, error) {
	if err := c.annotateBase(ctx, s, ed); err != nil {
		return Written{}, err
	}
	st, release, err := c.stage(ctx, s)
	if err != nil {
		return Written{}, err
	}
	defer release()
	for _, img := range s.images {
		if img.add != nil {
			copies = append(copies, blobCopy{file: img.add.gz, desc: img.add.desc})
		}
	}
	var out ref.Ref
	delay := writeRetryDelay
	for attempt := 1; ; attempt++ {
		out, err = c.apply(ctx, st, tgt, copies, ed.opts)
		if err == nil || !errors.Is(err, ErrIncompleteWrite) || attempt == writeAttempts {
			break
		}
		c.log.Info("the registry lacks part of the write; writing again", zap.String(logging.FieldRepository, tgt.CommonName()),
			zap.Int(logging.FieldAttempt, attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return Written{}, fmt.Errorf("pushing to %s: %w (writing again: %w)", tgt.CommonName(), err, mapErr(ctx.Err()))
		case <-time.After(delay):
		}
		delay *= 2
	}
	if err != nil {
		return Written{}, err
	}
	if out.Tag != "" || out.Digest == "" {
		// mod.Apply changed how it names what it pushed: fail loudly rather than report a wrong digest.
		return Written{}, fmt.Errorf("pushing to %s: regclient reports %s, want a digest and no tag", tgt.CommonName(), out.CommonName())
	}
	w := Written{
		Ref:          tgt.Registry + "/" + tgt.Repository + "@" + out.Digest,
		Digest:       out.Digest,
		MediaType:    mediatype.OCI1Manifest,
		Platforms:    make([]string, len(s.images)),
		BytesRead:    tr.read.Load(),
		BytesWritten: tr.written.Load(),
	}
	if s.m.IsList() {
		w.MediaType = mediatype.OCI1ManifestList
	}
	for i, img := range s.images {
		w.Platforms[i] = platformString(img.platform())
	}
	return w, nil
}

// apply is one attempt of a write: the blobs into the target, then mod.Apply from the stage st.
func (c *Client) apply(ctx context.Context, st, tgt ref.Ref, copies []blobCopy, edit []mod.Opts) (ref.Ref, error) {
	if err := c.copyBlobs(ctx, tgt, copies, nil); err != nil {
		return ref.Ref{}, err
	}
	all := append([]mod.Opts{mod.WithRefTgt(tgt), mod.WithManifestToOCI()}, edit...)
	out, err := mod.Apply(ctx, c.rc, st, all...)
	if err != nil {
		return ref.Ref{}, fmt.Errorf("pushing to %s: %w", tgt.CommonName(), mapErr(err))
	}
	return out, nil
}

// imageLayers are the layers of every image of the source, to copy from it.
func (s *source) imageLayers() []blobCopy {
	var out []blobCopy
	for _, img := range s.images {
		for _, l := range img.layers {
			out = append(out, blobCopy{from: s.ref, desc: l})
		}
	}
	return out
}

// stagePool hands out staging directories (temporary OCI layouts) and takes them back emptied. regclient's
// ocidir keeps some state per layout path for the life of the client, so the directories are reused rather
// than made anew for each write. The zero value is ready.
type stagePool struct {
	mu   sync.Mutex
	free []string
}

func (p *stagePool) get() (string, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		dir := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return dir, nil
	}
	p.mu.Unlock()
	dir, err := os.MkdirTemp("", "harborflow-stage-")
	if err != nil {
		return "", fmt.Errorf("creating a staging directory: %w", err)
	}
	return dir, nil
}

// put empties dir and keeps it for the next write, or removes it when it cannot be emptied.
func (p *stagePool) put(dir string) {
	entries, err := os.ReadDir(dir)
	for _, e := range entries {
		if err == nil {
			err = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return
	}
	p.mu.Lock()
	p.free = append(p.free, dir)
	p.mu.Unlock()
}

// removeIdle removes the directories no write is using.
func (p *stagePool) removeIdle() {
	p.mu.Lock()
	free := p.free
	p.free = nil
	p.mu.Unlock()
	for _, dir := range free {
		_ = os.RemoveAll(dir)
	}
}

// closeRemove closes and removes a temporary file.
func closeRemove(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}
