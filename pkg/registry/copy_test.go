package registry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// TestCopyCarriesReferrers copies an index between two registries by digest: its platforms, an SBOM referrer
// and a cosign signature (digest tag) arrive, no other tag is written, and a second copy writes nothing.
func TestCopyCarriesReferrers(t *testing.T) {
	src, dst := registrytest.New(t), registrytest.New(t)
	idx := src.PushIndex(t, "wso2/am:4.2.0.16.3", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64"}, {Platform: "linux/arm64"},
	}})
	sbom := src.PushSBOM(t, "wso2/am", idx)
	sig := src.PushSignature(t, "wso2/am", idx)
	c, counter := newClient(t, []registry.Host{src.Settings(), dst.Settings()})
	ctx := ctxT(t)

	if err := c.Copy(ctx, idx.Ref, dst.Ref("prod/am"), registry.WithReferrers()); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	for _, d := range []string{idx.Digest, idx.Children[0].Digest, sbom.Digest, sig.Digest} {
		if _, err := c.Resolve(ctx, dst.Ref("prod/am@"+d)); err != nil {
			t.Errorf("%s not at the destination: %v", d, err)
		}
	}
	tags, err := c.Tags(ctx, dst.Ref("prod/am"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 || tags[0] != sig.Tag {
		t.Errorf("tags at the destination %v, want only the signature's %s", tags, sig.Tag)
	}

	counter.Reset()
	if err := c.Copy(ctx, idx.Ref, dst.Ref("prod/am"), registry.WithReferrers()); err != nil {
		t.Fatalf("second Copy: %v", err)
	}
	if n := counter.Snapshot(); n.ManifestPut != 0 || n.BlobHead != 0 || n.BlobGet != 0 {
		t.Errorf("a second copy wrote %+v", n)
	}
}

// TestCopyWithoutReferrers leaves the referrers behind, and refuses a source without a digest.
func TestCopyWithoutReferrers(t *testing.T) {
	src, dst := registrytest.New(t), registrytest.New(t)
	img := src.PushImage(t, "wso2/is:7.1.0.4.1", registrytest.Image{})
	sbom := src.PushSBOM(t, "wso2/is", img)
	c, _ := newClient(t, []registry.Host{src.Settings(), dst.Settings()})
	ctx := ctxT(t)
	if err := c.Copy(ctx, img.Ref, dst.Ref("prod/is")); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if _, err := c.Resolve(ctx, dst.Ref("prod/is@"+sbom.Digest)); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("the SBOM was copied without WithReferrers: %v", err)
	}
	err := c.Copy(ctx, src.Ref("wso2/is:7.1.0.4.1"), dst.Ref("prod/is"))
	if !errors.Is(err, registry.ErrInvalidReference) || !strings.Contains(err.Error(), "7.1.0.4.1") {
		t.Errorf("a source by tag: %v, want ErrInvalidReference naming it", err)
	}
}

// TestTagPrecondition: a 412 (Harbor's answer to a push onto an immutable tag; the stand-in test in
// services/promoter has the real exchange) is ErrPrecondition, not retryable.
func TestTagPrecondition(t *testing.T) {
	reg := registrytest.New(t)
	img := reg.PushImage(t, "prod/am:4.2.0.16.3", registrytest.Image{})
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	reg.Fail(2, 412, "")
	err := c.Tag(ctxT(t), img.Ref, "latest")
	if !errors.Is(err, registry.ErrPrecondition) || registry.Retryable(err) {
		t.Errorf("Tag onto a protected tag: %v, want ErrPrecondition, not retryable", err)
	}
}
