package registry_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

const (
	annotBaseName   = "org.opencontainers.image.base.name"
	annotBaseDigest = "org.opencontainers.image.base.digest"
	mtIndex         = "application/vnd.oci.image.index.v1+json"
	mtManifest      = "application/vnd.oci.image.manifest.v1+json"
	mtLayerGzip     = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// The parts of manifests and configs the write tests look at.
type (
	ociDesc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
		Platform    *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"platform"`
	}
	ociManifest struct {
		MediaType   string            `json:"mediaType"`
		Config      ociDesc           `json:"config"`
		Layers      []ociDesc         `json:"layers"`
		Manifests   []ociDesc         `json:"manifests"`
		Annotations map[string]string `json:"annotations"`
	}
	ociConfig struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Config       struct {
			Labels map[string]string `json:"Labels"`
			Env    []string          `json:"Env"`
			User   string            `json:"User"`
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []struct {
			CreatedBy string `json:"created_by"`
			Comment   string `json:"comment"`
		} `json:"history"`
	}
)

// image is one platform image as read back from a registry.
type image struct {
	digest string
	m      ociManifest
	cfg    ociConfig
}

// layerDigests are the image's layer digests.
func (img image) layerDigests() []string {
	out := make([]string, len(img.m.Layers))
	for i, l := range img.m.Layers {
		out[i] = l.Digest
	}
	return out
}

// readBack reads a written image from reg (through its push listener, so the counts stay untouched): the
// top manifest, and each platform image with its config.
func readBack(t *testing.T, reg *registrytest.Registry, repo string, w registry.Written) (ociManifest, []image) {
	t.Helper()
	mt, body := reg.ReadManifest(t, repo+"@"+w.Digest)
	if mt != w.MediaType {
		t.Errorf("media type %s, Written says %s", mt, w.MediaType)
	}
	var top ociManifest
	mustUnmarshal(t, body, &top)
	digests := []string{w.Digest}
	if mt == mtIndex {
		digests = digests[:0]
		for _, d := range top.Manifests {
			digests = append(digests, d.Digest)
		}
	}
	var imgs []image
	for _, d := range digests {
		img := image{digest: d}
		if d == w.Digest {
			img.m = top
		} else {
			// Into a fresh value: decoding into a copy of top would add to top's own annotation map.
			_, body := reg.ReadManifest(t, repo+"@"+d)
			mustUnmarshal(t, body, &img.m)
		}
		if img.m.MediaType != mtManifest {
			t.Errorf("platform manifest %s has media type %s", d, img.m.MediaType)
		}
		mustUnmarshal(t, reg.ReadBlob(t, repo, img.m.Config.Digest), &img.cfg)
		imgs = append(imgs, img)
	}
	return top, imgs
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

// blobBytes is the size of every distinct blob (configs and layers) of imgs.
func blobBytes(imgs []image) int64 {
	seen := map[string]bool{}
	var n int64
	for _, img := range imgs {
		for _, d := range append([]ociDesc{img.m.Config}, img.m.Layers...) {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				n += d.Size
			}
		}
	}
	return n
}

// assertNoTags fails when repository has a tag.
func assertNoTags(t *testing.T, c *registry.Client, repository string) {
	t.Helper()
	tags, err := c.Tags(ctxT(t), repository)
	if err != nil {
		t.Fatalf("Tags(%s): %v", repository, err)
	}
	if len(tags) > 0 {
		t.Errorf("%s has tags %q after a write; want none", repository, tags)
	}
}

// assertAnnotated fails unless every manifest has want among its annotations.
func assertAnnotated(t *testing.T, name string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: annotation %s = %q, want %q (all: %v)", name, k, got[k], v, got)
		}
	}
}

// contextEntry is a file of a test's context directory: content, or a symbolic link's target.
type contextEntry struct {
	content string
	mode    os.FileMode
	link    string
}

// writeContext writes entries (slash paths) under a new directory.
func writeContext(t *testing.T, entries map[string]contextEntry) string {
	t.Helper()
	dir := t.TempDir()
	for name, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		var err error
		if e.link != "" {
			err = os.Symlink(e.link, p)
		} else if err = os.WriteFile(p, []byte(e.content), e.mode); err == nil {
			err = os.Chmod(p, e.mode) // past the umask
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// layerEntry is a tar entry of a layer, as the tests compare them.
type layerEntry struct {
	name, content, link string
	typ                 byte
	mode                int64
	uid, gid            int
	uname, gname        string
	mtime               time.Time
}

// readLayer reads the entries of a gzip tar layer.
func readLayer(t *testing.T, blob []byte) []layerEntry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	tr := tar.NewReader(zr)
	var out []layerEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		out = append(out, layerEntry{name: hdr.Name, content: string(content), link: hdr.Linkname, typ: hdr.Typeflag,
			mode: hdr.Mode, uid: hdr.Uid, gid: hdr.Gid, uname: hdr.Uname, gname: hdr.Gname, mtime: hdr.ModTime.UTC()})
	}
}

// The context of the overlay tests: what a customer adds to a WSO2 API Manager image.
var amContext = map[string]contextEntry{
	"home/wso2carbon/wso2am-4.2.0/repository/conf/deployment.toml":    {content: "[server]\nhostname = \"am.acme.example\"\n", mode: 0o640},
	"home/wso2carbon/wso2am-4.2.0/bin/acme-init.sh":                   {content: "#!/bin/sh\necho acme\n", mode: 0o755},
	"home/wso2carbon/wso2am-4.2.0/conf":                               {link: "repository/conf"},
	"home/wso2carbon/wso2am-4.2.0/jdk":                                {link: "/opt/java/openjdk"}, // outside the directory: stored, not followed
	"home/wso2carbon/wso2am-4.2.0/repository/components/lib/acme.jar": {content: "PK\x03\x04 not really a jar", mode: 0o644},
}

var amEdit = registry.Edit{
	Labels:      map[string]string{"update_level": "16", "org.opencontainers.image.version": "4.2.0.16.1"},
	Annotations: map[string]string{"org.opencontainers.image.version": "4.2.0.16.1", "com.acme.build": "1"},
	Env:         map[string]string{"JAVA_OPTS": "-Xmx2g"},
}

// memTrees is a TreeCache in memory that counts what it is asked.
type memTrees struct {
	mu         sync.Mutex
	data       map[string][]byte
	gets, puts int
}

func (m *memTrees) Get(_ context.Context, digest string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	d, ok := m.data[digest]
	return d, ok, nil
}

func (m *memTrees) Put(_ context.Context, digest string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts++
	if m.data == nil {
		m.data = map[string][]byte{}
	}
	m.data[digest] = data
	return nil
}

func TestOverlayImage(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushImage(t, "wso2-apim/am:4.2.0.16", registrytest.Image{
		Labels: map[string]string{"update_level": "16"}, User: "802", Entries: registrytest.WSO2Layers("16"),
	})
	ctxEntries := maps.Clone(amContext)
	ctxEntries["lib/jdbc.jar"] = contextEntry{content: "PK jdbc", mode: 0o644}
	dir := writeContext(t, ctxEntries)
	when := time.Date(2025, 3, 1, 12, 30, 45, 0, time.UTC)
	edit := amEdit
	edit.BaseName, edit.BaseDigest = reg.Ref("wso2-apim/am:4.2.0.16"), base.Digest
	c, counter := newClient(t, []registry.Host{reg.Settings()})
	served := reg.BlobBytesServed()

	w, err := c.Overlay(ctxT(t), base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: dir, Owner: "802:802", Time: when}, edit)
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	if w.Ref != reg.Ref("acme/am@"+w.Digest) || w.MediaType != mtManifest || !slices.Equal(w.Platforms, []string{"linux/amd64"}) {
		t.Errorf("Written = %+v", w)
	}
	_, imgs := readBack(t, reg, "acme/am", w)
	img := imgs[0]

	// The base's layers, unchanged, then one more.
	if got := img.layerDigests(); len(got) != len(base.Layers)+1 || !slices.Equal(got[:len(base.Layers)], base.Layers) {
		t.Fatalf("layers %v, want the base's %v and one more", got, base.Layers)
	}
	added := img.m.Layers[len(base.Layers)]
	if added.MediaType != mtLayerGzip {
		t.Errorf("added layer media type %s", added.MediaType)
	}
	if len(img.cfg.RootFS.DiffIDs) != len(img.m.Layers) || len(img.cfg.History) != len(img.m.Layers) {
		t.Errorf("config has %d diff IDs and %d history entries for %d layers", len(img.cfg.RootFS.DiffIDs), len(img.cfg.History), len(img.m.Layers))
	}
	got := readLayer(t, reg.ReadBlob(t, "acme/am", added.Digest))
	const root = "home/wso2carbon/wso2am-4.2.0/"
	epoch, productTime := time.Unix(0, 0).UTC(), time.Date(2024, 6, 1, 10, 0, 0, 500, time.UTC)
	dirEntry := func(name string, mode int64, uid int, mtime time.Time) layerEntry {
		return layerEntry{name: name + "/", typ: tar.TypeDir, mode: mode, uid: uid, gid: uid, mtime: mtime}
	}
	own := func(e layerEntry) layerEntry { e.uid, e.gid, e.mtime = 802, 802, when; return e }
	want := []layerEntry{
		// Every parent, as the base has it: /home root 0755, /home/wso2carbon 802:802 0750, the product's
		// directory with its sub-second time, conf with its setgid bit.
		dirEntry("home", 0o755, 0, epoch),
		dirEntry("home/wso2carbon", 0o750, 802, epoch),
		dirEntry("home/wso2carbon/wso2am-4.2.0", 0o755, 802, productTime),
		dirEntry(root+"bin", 0o750, 802, epoch),
		own(layerEntry{name: root + "bin/acme-init.sh", content: "#!/bin/sh\necho acme\n", typ: tar.TypeReg, mode: 0o755}),
		own(layerEntry{name: root + "conf", link: "repository/conf", typ: tar.TypeSymlink, mode: 0o777}),
		own(layerEntry{name: root + "jdk", link: "/opt/java/openjdk", typ: tar.TypeSymlink, mode: 0o777}),
		dirEntry(root+"repository", 0o755, 802, epoch),
		// The parents the base lacks: the recipe's owner, 0755, the layer's time.
		own(dirEntry(root+"repository/components", 0o755, 0, epoch)),
		own(dirEntry(root+"repository/components/lib", 0o755, 0, epoch)),
		own(layerEntry{name: root + "repository/components/lib/acme.jar", content: "PK\x03\x04 not really a jar", typ: tar.TypeReg, mode: 0o644}),
		dirEntry(root+"repository/conf", 0o2750, 802, epoch),
		own(layerEntry{name: root + "repository/conf/deployment.toml", content: "[server]\nhostname = \"am.acme.example\"\n", typ: tar.TypeReg, mode: 0o640}),
		// lib/jdbc.jar goes through the base's /lib -> usr/lib: the link stays, the jar lands in usr/lib.
		dirEntry("usr", 0o755, 0, epoch),
		dirEntry("usr/lib", 0o755, 0, epoch),
		own(layerEntry{name: "usr/lib/jdbc.jar", content: "PK jdbc", typ: tar.TypeReg, mode: 0o644}),
	}
	if !slices.Equal(got, want) {
		t.Errorf("added layer:\n got %+v\nwant %+v", got, want)
	}

	// The edit, on the config and the manifest.
	for k, v := range edit.Labels {
		if img.cfg.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, img.cfg.Config.Labels[k], v)
		}
	}
	if !slices.Contains(img.cfg.Config.Env, "JAVA_OPTS=-Xmx2g") || img.cfg.Config.User != "802" {
		t.Errorf("config env %q user %q; want JAVA_OPTS added and the base's user kept", img.cfg.Config.Env, img.cfg.Config.User)
	}
	assertAnnotated(t, "manifest", img.m.Annotations, edit.Annotations)
	assertAnnotated(t, "manifest", img.m.Annotations, map[string]string{annotBaseName: edit.BaseName, annotBaseDigest: base.Digest})
	assertNoTags(t, c, reg.Ref("acme/am"))

	// Same registry: the base's layers were mounted, and read once each for their trees, with the base's
	// config; the new layer and config were uploaded.
	baseBlobs := int64(len(reg.ReadBlob(t, "wso2-apim/am", base.Config)))
	for _, l := range base.Layers {
		baseBlobs += int64(len(reg.ReadBlob(t, "wso2-apim/am", l)))
	}
	if w.BytesRead != baseBlobs || reg.BlobBytesServed()-served != baseBlobs {
		t.Errorf("BytesRead %d, registry served %d; want the base's config and layers, %d bytes", w.BytesRead, reg.BlobBytesServed()-served, baseBlobs)
	}
	if want := added.Size + img.m.Config.Size; w.BytesWritten != want {
		t.Errorf("BytesWritten %d, want %d (the new layer and config)", w.BytesWritten, want)
	}
	if read, written := counter.BlobBytes(); read != w.BytesRead || written != w.BytesWritten {
		t.Errorf("Counter.BlobBytes() = %d, %d; Written says %d, %d", read, written, w.BytesRead, w.BytesWritten)
	}
}

// A typical update: the same OS layer, a new product layer. With a TreeCache, each base layer is read once
// across writes: the second write reads only the new product layer (and the new config).
func TestOverlayReadsEachBaseLayerOnce(t *testing.T) {
	t.Parallel()
	for _, other := range []bool{false, true} {
		t.Run(map[bool]string{false: "same registry", true: "other registry"}[other], func(t *testing.T) {
			t.Parallel()
			src := registrytest.New(t)
			dst, regs := src, []registry.Host{src.Settings()}
			if other {
				dst = registrytest.New(t)
				regs = append(regs, dst.Settings())
			}
			c, _ := newClient(t, regs)
			dir := writeContext(t, amContext)
			cache := &memTrees{}
			ctx := ctxT(t)
			blobSize := func(repo, d string) int64 { return int64(len(src.ReadBlob(t, repo, d))) }

			b16 := src.PushImage(t, "wso2-apim/am:4.2.0.16", registrytest.Image{Labels: map[string]string{"update_level": "16"}, Entries: registrytest.WSO2Layers("16")})
			w16, err := c.Overlay(ctx, b16.Ref, dst.Ref("acme/am"), registry.Layer{Dir: dir, Owner: "802:802", Trees: cache}, registry.Edit{})
			if err != nil {
				t.Fatalf("Overlay 16: %v", err)
			}
			cold := blobSize("wso2-apim/am", b16.Config) + blobSize("wso2-apim/am", b16.Layers[0]) + blobSize("wso2-apim/am", b16.Layers[1])
			if w16.BytesRead != cold || cache.puts != 2 {
				t.Errorf("first write read %d bytes and cached %d trees; want %d (config and both layers, each once) and 2", w16.BytesRead, cache.puts, cold)
			}

			b17 := src.PushImage(t, "wso2-apim/am:4.2.0.17", registrytest.Image{Labels: map[string]string{"update_level": "17"}, Entries: registrytest.WSO2Layers("17")})
			if b17.Layers[0] != b16.Layers[0] || b17.Layers[1] == b16.Layers[1] {
				t.Fatalf("bases 16 and 17 should share the OS layer and differ in the product layer: %v %v", b16.Layers, b17.Layers)
			}
			w17, err := c.Overlay(ctx, b17.Ref, dst.Ref("acme/am"), registry.Layer{Dir: dir, Owner: "802:802", Trees: cache}, registry.Edit{})
			if err != nil {
				t.Fatalf("Overlay 17: %v", err)
			}
			if warm := blobSize("wso2-apim/am", b17.Config) + blobSize("wso2-apim/am", b17.Layers[1]); w17.BytesRead != warm || cache.puts != 3 {
				t.Errorf("second write read %d bytes and cached %d trees in all; want %d (config and the new product layer) and 3", w17.BytesRead, cache.puts, warm)
			}
			// The same base and context give the same layer, cached tree or not.
			_, i16 := readBack(t, dst, "acme/am", w16)
			_, i17 := readBack(t, dst, "acme/am", w17)
			if a, b := i16[0].m.Layers[2].Digest, i17[0].m.Layers[2].Digest; a != b {
				t.Errorf("added layers differ: %s, %s", a, b)
			}
		})
	}
}

func TestOverlayIndex(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	idx := reg.PushIndex(t, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{amd64, arm64}, Attestations: true,
		Annotations: map[string]string{"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}})
	dir := writeContext(t, amContext)
	edit := amEdit
	edit.BaseName, edit.BaseDigest = reg.Ref("wso2-apim/am:4.2.0.16"), idx.Digest
	c, _ := newClient(t, []registry.Host{reg.Settings()})

	w, err := c.Overlay(ctxT(t), idx.Ref, reg.Ref("acme/am"), registry.Layer{Dir: dir, Owner: "802:802"}, edit)
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	if w.MediaType != mtIndex || !slices.Equal(w.Platforms, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("Written = %+v", w)
	}
	top, imgs := readBack(t, reg, "acme/am", w)
	if len(imgs) != 2 {
		t.Fatalf("index has %d entries, want the 2 platforms without the attestations", len(imgs))
	}
	baseAnnotations := map[string]string{annotBaseName: edit.BaseName, annotBaseDigest: idx.Digest}
	assertAnnotated(t, "index", top.Annotations, edit.Annotations)
	assertAnnotated(t, "index", top.Annotations, baseAnnotations)
	assertAnnotated(t, "index", top.Annotations, map[string]string{"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
	var added []string
	for i, img := range imgs {
		base := idx.Children[i]
		if got := img.layerDigests(); len(got) != len(base.Layers)+1 || !slices.Equal(got[:len(base.Layers)], base.Layers) {
			t.Errorf("%s: layers %v, want the base's %v and one more", w.Platforms[i], got, base.Layers)
		}
		added = append(added, img.m.Layers[len(img.m.Layers)-1].Digest)
		assertAnnotated(t, w.Platforms[i], img.m.Annotations, edit.Annotations)
		// A platform's base is the base's image for that platform, as buildah writes it.
		assertAnnotated(t, w.Platforms[i], img.m.Annotations, map[string]string{annotBaseName: edit.BaseName, annotBaseDigest: base.Digest})
		if img.cfg.Config.Labels["update_level"] != "16" || img.cfg.Config.Labels["arch"] == "" {
			t.Errorf("%s: labels %v, want update_level 16 and the base's own", w.Platforms[i], img.cfg.Config.Labels)
		}
	}
	if added[0] != added[1] {
		t.Errorf("the platforms got different layers %v; want the same one", added)
	}
	// The layer was uploaded once, with a config per platform.
	if want := imgs[0].m.Layers[len(imgs[0].m.Layers)-1].Size + imgs[0].m.Config.Size + imgs[1].m.Config.Size; w.BytesWritten != want {
		t.Errorf("BytesWritten %d, want %d", w.BytesWritten, want)
	}
	assertNoTags(t, c, reg.Ref("acme/am"))
}

// Each platform's layer is made from that platform's own base: where their directories differ, so do their
// layers, and each is uploaded once.
func TestOverlayIndexPerPlatformTrees(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	arm := registrytest.WSO2Layers("16")
	arm[1] = slices.Clone(arm[1])
	arm[1][0] = registrytest.Dir("home/wso2carbon", 0o700, 802, 802) // this platform's home is 0700
	idx := reg.PushIndex(t, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", Entries: registrytest.WSO2Layers("16")}, {Platform: "linux/arm64", Entries: arm},
	}})
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	dir := writeContext(t, map[string]contextEntry{"home/wso2carbon/security/custom.jks": {content: "jks", mode: 0o600}})
	w, err := c.Overlay(ctxT(t), idx.Ref, reg.Ref("acme/am"), registry.Layer{Dir: dir, Owner: "802:802"}, registry.Edit{})
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	_, imgs := readBack(t, reg, "acme/am", w)
	var added []string
	for i, mode := range []int64{0o750, 0o700} {
		l := imgs[i].m.Layers[len(imgs[i].m.Layers)-1]
		added = append(added, l.Digest)
		entries := readLayer(t, reg.ReadBlob(t, "acme/am", l.Digest))
		if len(entries) != 4 || entries[1].name != "home/wso2carbon/" || entries[1].mode != mode || entries[1].uid != 802 {
			t.Errorf("%s: added layer %+v, want home/wso2carbon with mode %o", w.Platforms[i], entries, mode)
		}
		if e := entries[2]; e.name != "home/wso2carbon/security/" || e.mode != 0o700 || e.uid != 802 {
			t.Errorf("%s: %+v, want security/ 802:802 0700, as the base has it", w.Platforms[i], e)
		}
	}
	if added[0] == added[1] {
		t.Errorf("both platforms got layer %s; want one each", added[0])
	}
	if want := blobBytes(imgs) - int64(len(reg.ReadBlob(t, "wso2-apim/am", idx.Children[0].Layers[0]))) -
		int64(len(reg.ReadBlob(t, "wso2-apim/am", idx.Children[0].Layers[1]))) -
		int64(len(reg.ReadBlob(t, "wso2-apim/am", idx.Children[1].Layers[1]))); w.BytesWritten != want {
		t.Errorf("BytesWritten %d, want %d: the two layers and two configs, once each", w.BytesWritten, want)
	}
}

// A Docker manifest list is written as an OCI index of OCI images: annotations are not Docker's.
func TestOverlayDocker(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	list := reg.PushIndex(t, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{amd64, arm64}, Docker: true})
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	w, err := c.Overlay(ctxT(t), list.Ref, reg.Ref("acme/am"), registry.Layer{Dir: writeContext(t, amContext)}, amEdit)
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	top, imgs := readBack(t, reg, "acme/am", w) // checks the media types of the index and the manifests
	assertAnnotated(t, "index", top.Annotations, amEdit.Annotations)
	for i, img := range imgs {
		if top.Manifests[i].MediaType != mtManifest || img.m.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
			t.Errorf("%s: entry %s, config %s; want OCI", w.Platforms[i], top.Manifests[i].MediaType, img.m.Config.MediaType)
		}
		for _, l := range img.m.Layers {
			if l.MediaType != mtLayerGzip {
				t.Errorf("%s: layer %s has media type %s", w.Platforms[i], l.Digest, l.MediaType)
			}
		}
		if !slices.Equal(img.layerDigests()[:1], list.Children[i].Layers) {
			t.Errorf("%s: layers %v, want the base's %v first", w.Platforms[i], img.layerDigests(), list.Children[i].Layers)
		}
	}
}

func TestOverlayPlatforms(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	idx := reg.PushIndex(t, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{amd64, arm64}, Attestations: true})
	img := reg.PushImage(t, "wso2-apim/am:amd64", amd64)
	dir := writeContext(t, amContext)
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)

	w, err := c.Overlay(ctx, idx.Ref, reg.Ref("acme/am"), registry.Layer{Dir: dir}, registry.Edit{Platforms: []string{"linux/arm64"}})
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	if !slices.Equal(w.Platforms, []string{"linux/arm64/v8"}) {
		t.Errorf("platforms %v, want linux/arm64/v8 only", w.Platforms)
	}
	if _, imgs := readBack(t, reg, "acme/am", w); len(imgs) != 1 || imgs[0].cfg.Architecture != "arm64" {
		t.Errorf("wrote %+v, want the arm64 image only", imgs)
	}

	for _, tc := range []struct {
		name, base string
		platforms  []string
	}{
		{"index", idx.Ref, []string{"linux/amd64", "linux/s390x"}},
		{"image", img.Ref, []string{"linux/s390x"}},
	} {
		_, err := c.Overlay(ctx, tc.base, reg.Ref("acme/am"), registry.Layer{Dir: dir}, registry.Edit{Platforms: tc.platforms})
		if err == nil || !strings.Contains(err.Error(), "no platform linux/s390x") {
			t.Errorf("%s: Overlay for %v: %v; want an error naming linux/s390x", tc.name, tc.platforms, err)
		}
	}
}

// redirectBlobs answers blob GETs with a redirect to /storage/..., as registries that keep blobs in object
// storage do, and serves that path.
func redirectBlobs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if rest, ok := strings.CutPrefix(req.URL.Path, "/storage"); ok {
			req = req.Clone(req.Context())
			req.URL.Path, req.URL.RawPath = rest, ""
			next.ServeHTTP(w, req)
			return
		}
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			http.Redirect(w, req, "/storage"+req.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// Across registries, layers are downloaded and uploaded, and counted, also when blob GETs are redirected.
func TestOverlayOtherRegistry(t *testing.T) {
	t.Parallel()
	src := registrytest.New(t, registrytest.WithMiddleware(redirectBlobs))
	dst := registrytest.New(t)
	idx := src.PushIndex(t, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", LayerSize: 300 << 10}, {Platform: "linux/arm64", LayerSize: 200 << 10},
	}})
	dir := writeContext(t, amContext)
	c, _ := newClient(t, []registry.Host{src.Settings(), dst.Settings()})

	w, err := c.Overlay(ctxT(t), idx.Ref, dst.Ref("acme/am"), registry.Layer{Dir: dir, Owner: "802:802"}, amEdit)
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	_, imgs := readBack(t, dst, "acme/am", w)
	var baseBlobs int64
	for i, child := range idx.Children {
		baseBlobs += int64(len(src.ReadBlob(t, "wso2-apim/am", child.Config)))
		for _, l := range child.Layers {
			baseBlobs += int64(len(src.ReadBlob(t, "wso2-apim/am", l)))
		}
		if got := imgs[i].layerDigests(); !slices.Equal(got[:len(child.Layers)], child.Layers) {
			t.Errorf("platform %d: layers %v, want the base's %v first", i, got, child.Layers)
		}
	}
	if w.BytesRead != baseBlobs || src.BlobBytesServed() != baseBlobs {
		t.Errorf("BytesRead %d, source served %d; want %d: every base layer and config once", w.BytesRead, src.BlobBytesServed(), baseBlobs)
	}
	if want := blobBytes(imgs); w.BytesWritten != want {
		t.Errorf("BytesWritten %d, want %d: every blob of the result once", w.BytesWritten, want)
	}
	assertNoTags(t, c, dst.Ref("acme/am"))
}

// Concurrent writes share the client's transports; each counts only its own bytes.
func TestOverlayConcurrentCounts(t *testing.T) {
	t.Parallel()
	src := registrytest.New(t)
	dst := registrytest.New(t)
	dir := writeContext(t, amContext)
	c, _ := newClient(t, []registry.Host{src.Settings(), dst.Settings()})
	ctx := ctxT(t)
	sizes := []int{64 << 10, 192 << 10, 512 << 10, 1 << 20}
	var wg sync.WaitGroup
	for i, size := range sizes {
		base := src.PushImage(t, "base/b"+string(rune('a'+i))+":1", registrytest.Image{LayerSize: size})
		wg.Go(func() {
			w, err := c.Overlay(ctx, base.Ref, dst.Ref("acme/b"+string(rune('a'+i))), registry.Layer{Dir: dir}, registry.Edit{})
			if err != nil {
				t.Errorf("Overlay %d: %v", i, err)
				return
			}
			// The random layer, plus a small config and layer of its own.
			if w.BytesRead < int64(size) || w.BytesRead > int64(size)+8<<10 {
				t.Errorf("Overlay of a %d byte layer read %d bytes", size, w.BytesRead)
			}
		})
	}
	wg.Wait()
}

// The same base, files, owner and time give the same layer and the same image, from any client: a write a
// crash interrupted is redone by another process with the same result, not a second image.
func TestOverlayLayerReproducible(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushImage(t, "wso2-apim/am:4.2.0.16", registrytest.Image{Entries: registrytest.WSO2Layers("16"),
		Created: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)})
	ctx := ctxT(t)
	when := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	overlay := func(target string, l registry.Layer) (image, registry.Written) {
		t.Helper()
		c, _ := newClient(t, []registry.Host{reg.Settings()}) // a client of its own: another process
		w, err := c.Overlay(ctx, base.Ref, reg.Ref(target), l, amEdit)
		if err != nil {
			t.Fatalf("Overlay: %v", err)
		}
		_, imgs := readBack(t, reg, target, w)
		return imgs[0], w
	}
	added := func(img image) string { return img.m.Layers[len(img.m.Layers)-1].Digest }
	first, w1 := overlay("acme/one", registry.Layer{Dir: writeContext(t, amContext), Owner: "802:802", Time: when})
	again, w2 := overlay("acme/one", registry.Layer{Dir: writeContext(t, amContext), Owner: "802:802", Time: when})
	if w1.Digest != w2.Digest || added(first) != added(again) {
		t.Errorf("the same base, files, owner and time gave images %s and %s (layers %s, %s)", w1.Digest, w2.Digest, added(first), added(again))
	}
	for name, l := range map[string]registry.Layer{
		"time":  {Dir: writeContext(t, amContext), Owner: "802:802", Time: when.Add(time.Second)},
		"owner": {Dir: writeContext(t, amContext), Owner: "0:0", Time: when},
	} {
		if other, _ := overlay("acme/"+name, l); added(other) == added(first) {
			t.Errorf("another %s gave the same layer %s", name, added(other))
		}
	}
	// Without a time, the new history entry has the base's creation time.
	img, _ := overlay("acme/untimed", registry.Layer{Dir: writeContext(t, amContext), Owner: "802:802"})
	var cfg struct {
		History []struct {
			Created   time.Time `json:"created"`
			CreatedBy string    `json:"created_by"`
		} `json:"history"`
	}
	mustUnmarshal(t, reg.ReadBlob(t, "acme/untimed", img.m.Config.Digest), &cfg)
	if n := len(cfg.History); n != 3 || !cfg.History[2].Created.Equal(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)) ||
		!strings.HasPrefix(cfg.History[2].CreatedBy, "harborflow overlay") {
		t.Errorf("history %+v; want a third entry by the overlay, created when the base was", cfg.History)
	}
}

func TestOverlayRejects(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushImage(t, "wso2-apim/am:4.2.0.16", amd64)
	good := writeContext(t, amContext)
	empty := t.TempDir()
	if err := os.MkdirAll(filepath.Join(empty, "only/directories"), 0o750); err != nil {
		t.Fatal(err)
	}
	c, counter := newClient(t, []registry.Host{reg.Settings()})
	missing := reg.Ref("wso2-apim/am@sha256:" + strings.Repeat("0", 64))
	for _, tc := range []struct {
		name, base, target string
		layer              registry.Layer
		edit               registry.Edit
		is                 error
		msg                string
	}{
		{"missing dir", base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: filepath.Join(good, "nope")}, registry.Edit{}, os.ErrNotExist, "context directory"},
		{"empty dir", base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: empty}, registry.Edit{}, nil, "no files to add"},
		{"bad owner", base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: good, Owner: "wso2carbon"}, registry.Edit{}, nil, "uid:gid"},
		{"base by tag", reg.Ref("wso2-apim/am:4.2.0.16"), reg.Ref("acme/am"), registry.Layer{Dir: good}, registry.Edit{}, registry.ErrInvalidReference, "@digest"},
		{"target with tag", base.Ref, reg.Ref("acme/am:1"), registry.Layer{Dir: good}, registry.Edit{}, registry.ErrInvalidReference, "without tag"},
		{"target with digest", base.Ref, reg.Ref("acme/am@" + base.Digest), registry.Layer{Dir: good}, registry.Edit{}, registry.ErrInvalidReference, "without tag"},
		{"half a base", base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: good}, registry.Edit{BaseName: reg.Ref("wso2-apim/am:4.2.0.16")}, nil, "both or neither"},
		{"bad platform", base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: good}, registry.Edit{Platforms: []string{"linux amd64"}}, nil, "platform"},
		{"missing base", missing, reg.Ref("acme/am"), registry.Layer{Dir: good}, registry.Edit{}, registry.ErrNotFound, missing},
	} {
		_, err := c.Overlay(ctxT(t), tc.base, tc.target, tc.layer, tc.edit)
		if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Overlay: %v; want an error (%v) saying %q", tc.name, err, tc.is, tc.msg)
		}
	}
	if n := counter.Snapshot().ManifestPut; n != 0 {
		t.Errorf("%d manifests pushed by failed overlays", n)
	}
}

// A registry that refuses the push: the error is ErrUnauthorized and says where the push went.
func TestOverlayPushDenied(t *testing.T) {
	t.Parallel()
	deny := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodGet || req.Method == http.MethodHead {
				next.ServeHTTP(w, req)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
		})
	}
	reg := registrytest.New(t, registrytest.WithMiddleware(deny))
	base := reg.PushImage(t, "wso2-apim/am:4.2.0.16", amd64)
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	_, err := c.Overlay(ctxT(t), base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: writeContext(t, amContext)}, registry.Edit{})
	if !errors.Is(err, registry.ErrUnauthorized) || !strings.Contains(err.Error(), reg.Ref("acme/am")) || registry.Retryable(err) {
		t.Errorf("Overlay to a registry that denies pushes: %v; want ErrUnauthorized naming the target, not retryable", err)
	}
}

// What distribution answers a manifest PUT whose blobs an interrupted write left missing or half-written:
// the write is tried again, blobs first, and succeeds; when the registry keeps answering so, the error is
// ErrIncompleteWrite, retryable, never a reason to give up on the build.
func TestOverlayRewritesAnIncompleteWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fails int
		ok    bool
	}{{"once", 1, true}, {"always", 100, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var left, puts atomic.Int64
			left.Store(int64(tc.fails))
			refuse := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") {
						puts.Add(1)
						if left.Add(-1) >= 0 {
							w.Header().Set("Content-Type", "application/json")
							w.WriteHeader(http.StatusBadRequest)
							_, _ = w.Write([]byte(`{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},` +
								`{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:` + hexA + `"}]}`))
							return
						}
					}
					next.ServeHTTP(w, req)
				})
			}
			reg := registrytest.New(t, registrytest.WithMiddleware(refuse))
			base := reg.PushImage(t, "wso2-apim/am:4.2.0.16", registrytest.Image{Entries: registrytest.WSO2Layers("16")})
			c, _ := newClient(t, []registry.Host{reg.Settings()})
			w, err := c.Overlay(ctxT(t), base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: writeContext(t, amContext)}, registry.Edit{})
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Overlay: %v; want it written on the second attempt", err)
			case tc.ok:
				readBack(t, reg, "acme/am", w)
				if puts.Load() != 2 {
					t.Errorf("%d manifest PUTs, want 2", puts.Load())
				}
			case !errors.Is(err, registry.ErrIncompleteWrite) || !registry.Retryable(err):
				t.Errorf("Overlay: %v; want ErrIncompleteWrite, retryable", err)
			case puts.Load() != 3:
				t.Errorf("%d manifest PUTs, want 3 attempts", puts.Load())
			}
		})
	}
}

func TestRebase(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	v1 := reg.PushImage(t, "wso2-apim/am:4.2.0.15", registrytest.Image{Labels: map[string]string{"update_level": "15"},
		Files: map[string]string{"opt/wso2/update_level": "15"}})
	v2 := reg.PushImage(t, "wso2-apim/am:4.2.0.16", registrytest.Image{Labels: map[string]string{"update_level": "16"},
		Files: map[string]string{"opt/wso2/update_level": "16"}, LayerSize: 512 << 10})
	app := reg.PushImage(t, "acme/am:4.2.0.15.1", registrytest.Image{Base: &v1, Labels: map[string]string{"update_level": "15"},
		Files: map[string]string{"home/wso2carbon/acme.jar": "jar"}})
	other := reg.PushImage(t, "other/base:1", registrytest.Image{Files: map[string]string{"etc/other": "x"}})
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)
	edit := registry.Edit{Labels: map[string]string{"update_level": "16"}, BaseName: reg.Ref("wso2-apim/am:4.2.0.16"), BaseDigest: v2.Digest}

	w, err := c.Rebase(ctx, app.Ref, v1.Ref, v2.Ref, reg.Ref("acme/am-rebuilt"), edit)
	if err != nil {
		t.Fatalf("Rebase: %v", err)
	}
	_, imgs := readBack(t, reg, "acme/am-rebuilt", w)
	img := imgs[0]
	own := app.Layers[len(v1.Layers):]
	if want := append(slices.Clone(v2.Layers), own...); !slices.Equal(img.layerDigests(), want) {
		t.Errorf("layers %v, want the new base's %v then the image's own %v", img.layerDigests(), v2.Layers, own)
	}
	if len(img.cfg.RootFS.DiffIDs) != len(img.m.Layers) || len(img.cfg.History) != len(img.m.Layers) {
		t.Errorf("config has %d diff IDs and %d history entries for %d layers", len(img.cfg.RootFS.DiffIDs), len(img.cfg.History), len(img.m.Layers))
	}
	if img.cfg.Config.Labels["update_level"] != "16" {
		t.Errorf("labels %v, want update_level 16", img.cfg.Config.Labels)
	}
	assertAnnotated(t, "manifest", img.m.Annotations, map[string]string{annotBaseName: edit.BaseName, annotBaseDigest: v2.Digest})
	// Configs only: the new base's big layer was mounted.
	if w.BytesRead > 16<<10 {
		t.Errorf("BytesRead %d: a layer was downloaded", w.BytesRead)
	}
	assertNoTags(t, c, reg.Ref("acme/am-rebuilt"))

	_, err = c.Rebase(ctx, app.Ref, other.Ref, v2.Ref, reg.Ref("acme/am-rebuilt"), edit)
	if !errors.Is(err, registry.ErrBaseMismatch) {
		t.Errorf("Rebase from a base the image is not built on: %v; want ErrBaseMismatch", err)
	}
}

// Docker schema 2 images and bases: rebased, and written with OCI media types throughout.
func TestRebaseDocker(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	v1 := reg.PushImage(t, "wso2-apim/am:4.2.0.15", registrytest.Image{Docker: true, Files: map[string]string{"opt/wso2/update_level": "15"}})
	v2 := reg.PushImage(t, "wso2-apim/am:4.2.0.16", registrytest.Image{Docker: true, Files: map[string]string{"opt/wso2/update_level": "16"}})
	app := reg.PushImage(t, "acme/am:4.2.0.15.1", registrytest.Image{Docker: true, Base: &v1, Files: map[string]string{"acme.jar": "jar"}})
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	w, err := c.Rebase(ctxT(t), app.Ref, v1.Ref, v2.Ref, reg.Ref("acme/am-rebuilt"), registry.Edit{Labels: map[string]string{"update_level": "16"}})
	if err != nil {
		t.Fatalf("Rebase: %v", err)
	}
	_, imgs := readBack(t, reg, "acme/am-rebuilt", w)
	if want := append(slices.Clone(v2.Layers), app.Layers[len(v1.Layers):]...); !slices.Equal(imgs[0].layerDigests(), want) {
		t.Errorf("layers %v, want %v", imgs[0].layerDigests(), want)
	}
	if mt := imgs[0].m.Config.MediaType; mt != "application/vnd.oci.image.config.v1+json" {
		t.Errorf("config media type %s", mt)
	}
	for _, l := range imgs[0].m.Layers {
		if l.MediaType != mtLayerGzip {
			t.Errorf("layer %s has media type %s", l.Digest, l.MediaType)
		}
	}
}

func TestRebaseIndex(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	plats := []string{"linux/amd64", "linux/arm64"}
	base := func(tag, level string) registrytest.Pushed {
		var imgs []registrytest.Image
		for _, p := range plats {
			imgs = append(imgs, registrytest.Image{Platform: p, Labels: map[string]string{"update_level": level},
				Files: map[string]string{"opt/wso2/update_level": level + " " + p}})
		}
		return reg.PushIndex(t, "wso2-apim/am:"+tag, registrytest.Index{Images: imgs})
	}
	v1, v2 := base("4.2.0.15", "15"), base("4.2.0.16", "16")
	var appImgs []registrytest.Image
	for i, p := range plats {
		appImgs = append(appImgs, registrytest.Image{Platform: p, Base: &v1.Children[i], Files: map[string]string{"home/wso2carbon/acme.jar": p}})
	}
	app := reg.PushIndex(t, "acme/am:4.2.0.15.1", registrytest.Index{Images: appImgs, Attestations: true})
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	edit := registry.Edit{Labels: map[string]string{"update_level": "16"}, Annotations: map[string]string{"com.acme.build": "2"},
		BaseName: reg.Ref("wso2-apim/am:4.2.0.16"), BaseDigest: v2.Digest}

	w, err := c.Rebase(ctxT(t), app.Ref, v1.Ref, v2.Ref, reg.Ref("acme/am-rebuilt"), edit)
	if err != nil {
		t.Fatalf("Rebase: %v", err)
	}
	if !slices.Equal(w.Platforms, plats) {
		t.Errorf("platforms %v, want %v", w.Platforms, plats)
	}
	top, imgs := readBack(t, reg, "acme/am-rebuilt", w)
	want := map[string]string{annotBaseName: edit.BaseName, annotBaseDigest: v2.Digest, "com.acme.build": "2"}
	assertAnnotated(t, "index", top.Annotations, want)
	for i, img := range imgs {
		own := app.Children[i].Layers[len(v1.Children[i].Layers):]
		if wantLayers := append(slices.Clone(v2.Children[i].Layers), own...); !slices.Equal(img.layerDigests(), wantLayers) {
			t.Errorf("%s: layers %v, want %v", plats[i], img.layerDigests(), wantLayers)
		}
		assertAnnotated(t, plats[i], img.m.Annotations, map[string]string{annotBaseName: edit.BaseName,
			annotBaseDigest: v2.Children[i].Digest, "com.acme.build": "2"})
		if img.cfg.Config.Labels["update_level"] != "16" {
			t.Errorf("%s: labels %v", plats[i], img.cfg.Config.Labels)
		}
	}
	assertNoTags(t, c, reg.Ref("acme/am-rebuilt"))
}

// Each platform's old base is found on its own: from its own annotations (buildah), the index's (regctl,
// whose platform manifests name the base index), or the old base given, whichever it is built on.
func TestRebaseFindsEachPlatformsBase(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	plats := []string{"linux/amd64", "linux/arm64"}
	base := func(tag, level string) registrytest.Pushed {
		var imgs []registrytest.Image
		for _, p := range plats {
			imgs = append(imgs, registrytest.Image{Platform: p, Files: map[string]string{"opt/wso2/level": level + " " + p}})
		}
		return reg.PushIndex(t, "wso2-apim/am:"+tag, registrytest.Index{Images: imgs})
	}
	v1, v2 := base("4.2.0.15", "15"), base("4.2.0.16", "16")
	name := reg.Ref("wso2-apim/am:4.2.0.15")
	annot := func(d string) map[string]string { return map[string]string{annotBaseName: name, annotBaseDigest: d} }
	// app pushes a customer image on v1, with annotations per platform (i) and on the index.
	app := func(repo string, platform func(i int) map[string]string, index map[string]string) registrytest.Pushed {
		var imgs []registrytest.Image
		for i, p := range plats {
			imgs = append(imgs, registrytest.Image{Platform: p, Base: &v1.Children[i], Annotations: platform(i),
				Files: map[string]string{"home/wso2carbon/acme.jar": p}})
		}
		return reg.PushIndex(t, repo+":1", registrytest.Index{Images: imgs, Annotations: index})
	}
	none := func(int) map[string]string { return nil }
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)
	for _, tc := range []struct {
		name    string
		image   registrytest.Pushed
		oldBase string
		err     string
	}{
		{"buildah: each platform names its own base", app("acme/buildah", func(i int) map[string]string { return annot(v1.Children[i].Digest) }, nil), "", ""},
		{"regctl: every manifest names the base index", app("acme/regctl", func(int) map[string]string { return annot(v1.Digest) }, annot(v1.Digest)), "", ""},
		{"the index names the base", app("acme/index", none, annot(v1.Digest)), "", ""},
		{"the old base given", app("acme/plain", none, nil), v1.Ref, ""},
		{"a wrong annotation, then the old base given", app("acme/wrong", func(int) map[string]string { return annot(v1.Children[0].Digest) }, nil), v1.Ref, ""},
		{"nothing to go by", app("acme/nothing", none, nil), "", "no old base was given"},
		{"built on none", app("acme/none", func(int) map[string]string { return annot(v2.Children[0].Digest) }, nil), v2.Ref, "built on none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := c.Rebase(ctx, tc.image.Ref, tc.oldBase, v2.Ref, reg.Ref("acme/rebased"), registry.Edit{BaseName: reg.Ref("wso2-apim/am:4.2.0.16"), BaseDigest: v2.Digest})
			if tc.err != "" {
				if !errors.Is(err, registry.ErrBaseMismatch) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Rebase: %v; want ErrBaseMismatch saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Rebase: %v", err)
			}
			_, imgs := readBack(t, reg, "acme/rebased", w)
			for i, img := range imgs {
				own := tc.image.Children[i].Layers[len(v1.Children[i].Layers):]
				if want := append(slices.Clone(v2.Children[i].Layers), own...); !slices.Equal(img.layerDigests(), want) {
					t.Errorf("%s: layers %v, want %v", plats[i], img.layerDigests(), want)
				}
				if len(img.cfg.RootFS.DiffIDs) != len(img.m.Layers) || len(img.cfg.History) != len(img.m.Layers) {
					t.Errorf("%s: %d diff IDs and %d history entries for %d layers", plats[i], len(img.cfg.RootFS.DiffIDs), len(img.cfg.History), len(img.m.Layers))
				}
				assertAnnotated(t, plats[i], img.m.Annotations, map[string]string{annotBaseDigest: v2.Children[i].Digest})
			}
		})
	}
}

func TestPush(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushIndex(t, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{amd64, arm64}})
	var imgs []registrytest.Image
	for i, img := range []registrytest.Image{amd64, arm64} {
		img.Base = &base.Children[i]
		imgs = append(imgs, img)
	}
	built := reg.PushIndex(t, "build/am:1", registrytest.Index{Images: imgs, Attestations: true})
	layout := t.TempDir()
	reg.WriteLayout(t, "build/am:1", layout)
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	edit := amEdit
	edit.BaseName, edit.BaseDigest = reg.Ref("wso2-apim/am:4.2.0.16"), base.Digest

	w, err := c.Push(ctxT(t), layout, reg.Ref("acme/am"), edit)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if w.MediaType != mtIndex || !slices.Equal(w.Platforms, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("Written = %+v", w)
	}
	top, got := readBack(t, reg, "acme/am", w)
	assertAnnotated(t, "index", top.Annotations, map[string]string{annotBaseName: edit.BaseName, annotBaseDigest: base.Digest})
	assertAnnotated(t, "index", top.Annotations, edit.Annotations)
	for i, img := range got {
		if !slices.Equal(img.layerDigests(), built.Children[i].Layers) {
			t.Errorf("%s: layers %v, want the layout's %v", w.Platforms[i], img.layerDigests(), built.Children[i].Layers)
		}
		assertAnnotated(t, w.Platforms[i], img.m.Annotations, map[string]string{annotBaseName: edit.BaseName, annotBaseDigest: base.Children[i].Digest})
		if img.cfg.Config.Labels["update_level"] != "16" {
			t.Errorf("%s: labels %v", w.Platforms[i], img.cfg.Config.Labels)
		}
	}
	if w.BytesRead != 0 || w.BytesWritten != blobBytes(got) {
		t.Errorf("BytesRead %d, BytesWritten %d; want 0 and %d (every blob uploaded from the layout once)", w.BytesRead, w.BytesWritten, blobBytes(got))
	}
	assertNoTags(t, c, reg.Ref("acme/am"))
}

func TestPushLayoutChoice(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	a := reg.PushImage(t, "build/am:a", amd64)
	reg.PushImage(t, "build/am:b", arm64)
	layout := t.TempDir()
	reg.WriteLayout(t, "build/am:a", layout)
	reg.WriteLayout(t, "build/am:b", layout)
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)

	if _, err := c.Push(ctx, layout, reg.Ref("acme/am"), registry.Edit{}); err == nil || !strings.Contains(err.Error(), "holds 2 images") {
		t.Errorf("Push of a layout with two named images: %v; want an error", err)
	}
	// Only a's entry keeps its name: a is pushed.
	file := filepath.Join(layout, "index.json")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var idx ociManifest
	mustUnmarshal(t, b, &idx)
	for i := range idx.Manifests {
		if idx.Manifests[i].Digest != a.Digest {
			idx.Manifests[i].Annotations = nil
		}
	}
	if b, err = json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mtIndex, "manifests": idx.Manifests}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := c.Push(ctx, layout, reg.Ref("acme/am"), registry.Edit{})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if w.Digest != a.Digest || w.Platforms[0] != "linux/amd64" {
		t.Errorf("pushed %+v, want %s unchanged (an OCI image, no edit)", w, a.Digest)
	}

	if _, err := c.Push(ctx, t.TempDir(), reg.Ref("acme/am"), registry.Edit{}); err == nil || !strings.Contains(err.Error(), "OCI layout") {
		t.Errorf("Push of an empty directory: %v; want an error about the layout", err)
	}
}

func TestTag(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushIndex(t, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{amd64, arm64}})
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)
	w, err := c.Overlay(ctx, base.Ref, reg.Ref("acme/am"), registry.Layer{Dir: writeContext(t, amContext)}, amEdit)
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	assertNoTags(t, c, reg.Ref("acme/am"))
	if err := c.Tag(ctx, w.Ref, "4.2.0.16.1"); err != nil {
		t.Fatalf("Tag: %v", err)
	}
	d, err := c.Resolve(ctx, reg.Ref("acme/am:4.2.0.16.1"))
	if err != nil || d.Digest != w.Digest || d.MediaType != mtIndex {
		t.Errorf("Resolve after Tag = %+v, %v; want %s", d, err, w.Digest)
	}
	if tags, err := c.Tags(ctx, reg.Ref("acme/am")); err != nil || !slices.Equal(tags, []string{"4.2.0.16.1"}) {
		t.Errorf("Tags = %q, %v", tags, err)
	}

	missing := reg.Ref("acme/am@sha256:" + strings.Repeat("0", 64))
	if err := c.Tag(ctx, missing, "x"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Tag of a missing manifest: %v; want ErrNotFound", err)
	}
	for _, tc := range [][2]string{{reg.Ref("acme/am:4.2.0.16.1"), "x"}, {w.Ref, "-bad"}, {w.Ref, ""}} {
		if err := c.Tag(ctx, tc[0], tc[1]); !errors.Is(err, registry.ErrInvalidReference) {
			t.Errorf("Tag(%s, %q): %v; want ErrInvalidReference", tc[0], tc[1], err)
		}
	}
	if tags, _ := c.Tags(ctx, reg.Ref("acme/am")); !slices.Equal(tags, []string{"4.2.0.16.1"}) {
		t.Errorf("tags %q after refused Tags", tags)
	}
}

// BenchmarkOverlay reports what an overlay of a two-platform base with 4 MiB layers costs, within a registry
// (mounts) and across registries (copies): blob bytes the client read and wrote, and what the source
// registry served, per overlay.
func BenchmarkOverlay(b *testing.B) {
	for _, bc := range []struct {
		name  string
		other bool
	}{{"same-registry", false}, {"other-registry", true}} {
		b.Run(bc.name, func(b *testing.B) {
			src := registrytest.New(b)
			dst := src
			if bc.other {
				dst = registrytest.New(b)
			}
			base := src.PushIndex(b, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{
				{Platform: "linux/amd64", LayerSize: 4 << 20}, {Platform: "linux/arm64", LayerSize: 4 << 20},
			}})
			dir := b.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "deployment.toml"), bytes.Repeat([]byte("x = 1\n"), 1000), 0o600); err != nil {
				b.Fatal(err)
			}
			regs := []registry.Host{src.Settings()}
			if bc.other {
				regs = append(regs, dst.Settings())
			}
			c, counter := newClient(b, regs)
			ctx := ctxT(b)
			served := src.BlobBytesServed()
			counter.Reset()
			var read, written int64
			n := 0
			for b.Loop() {
				w, err := c.Overlay(ctx, base.Ref, dst.Ref("acme/am"+strconv.Itoa(n)), registry.Layer{Dir: dir, Owner: "802:802"}, amEdit)
				if err != nil {
					b.Fatal(err)
				}
				read, written = read+w.BytesRead, written+w.BytesWritten
				n++
			}
			b.ReportMetric(float64(read)/float64(n), "read-B/op")
			b.ReportMetric(float64(written)/float64(n), "written-B/op")
			b.ReportMetric(float64(src.BlobBytesServed()-served)/float64(n), "served-B/op")
			b.ReportMetric(float64(counter.Snapshot().Total())/float64(n), "requests/op")
		})
	}
}
