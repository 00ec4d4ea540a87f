package rebuilder_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
)

// signer signs with a key of its own, through client.
type signer struct {
	s      *signature.Signer
	client *registry.Client
}

func (s signer) Sign(ctx context.Context, image string) error {
	_, err := s.s.Sign(ctx, s.client, image)
	return err
}

func newSigner(t testing.TB, client *registry.Client) signer {
	t.Helper()
	s, err := signature.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return signer{s: s, client: client}
}

// TestRebuiltImagesAreSigned: with a signer, the rebuilt index and each of its platform manifests carry a
// signature that verifies with the signer's key, and a redelivery of the same trigger adds no signature.
func TestRebuiltImagesAreSigned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, overlayRecipe(t))
	s := newSigner(t, f.client)
	f.deps.Signer = s
	base := f.base("wso2/am:4.2.0.16", "16", "linux/amd64", "linux/arm64")
	m := delivery(f, base)
	got := rebuiltOf(t, redeliver(t, f.process(nil), m))

	target := f.reg.Ref("acme/am")
	art, err := f.client.Inspect(ctx, target+"@"+got.GetDigest())
	if err != nil || len(art.Platforms) != 2 {
		t.Fatalf("the rebuilt index: %v %v", art, err)
	}
	keys := []*signature.Verifier{s.s.Verifier()}
	images := []string{target + "@" + got.GetDigest()}
	for _, p := range art.Platforms {
		images = append(images, target+"@"+p.Digest)
	}
	sigs := map[string]string{}
	for _, img := range images {
		if err := signature.Verify(ctx, f.client, img, keys); err != nil {
			t.Errorf("%s: %v", img, err)
		}
		d, err := f.client.Resolve(ctx, target+":"+strings.Replace(img[strings.Index(img, "@")+1:], ":", "-", 1)+".sig")
		if err != nil {
			t.Fatal(err)
		}
		sigs[img] = d.Digest
	}

	again := rebuiltOf(t, redeliver(t, f.process(nil), m))
	if again.GetDigest() != got.GetDigest() {
		t.Fatalf("the redelivery built %s, want %s", again.GetDigest(), got.GetDigest())
	}
	for img, want := range sigs {
		d, err := f.client.Resolve(ctx, target+":"+strings.Replace(img[strings.Index(img, "@")+1:], ":", "-", 1)+".sig")
		if err != nil || d.Digest != want {
			t.Errorf("the signature of %s changed on a redelivery: %v %v, want %s", img, d, err, want)
		}
	}
}

// TestCrashBetweenPushAndSign: a process dies after it pushed the image and before its first signature write;
// nothing is tagged yet. The redelivery, in another process with the same key, signs the index and each
// platform manifest once and then tags it: one signature each, and no tag on an unsigned image.
func TestCrashBetweenPushAndSign(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	steps := &writeSteps{}
	reg := registrytest.New(t, registrytest.WithMiddleware(steps.wrap))
	markedClient := func(name string) *registry.Client {
		c, err := registry.New([]registry.Host{reg.Settings()}, registry.WithTransport(marked(name)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}

	// The writes of a signed build nothing stops: the first after the image's push is the signing's.
	rec := steps.add(t, "ref", 0, "")
	ref := newFixtureOn(t, reg, nil, crashRecipe(t, "signref"))
	ref.deps.Signer = newSigner(t, markedClient("ref"))
	base := ref.base("wso2/am:4.2.0.16", "16", "linux/amd64", "linux/arm64")
	rebuiltOf(t, redeliver(t, ref.process(marked("ref")), delivery(ref, base)))
	firstSig := slices.IndexFunc(rec.writes, func(w string) bool { return strings.Contains(w, ".sig") })
	if firstSig < 0 {
		t.Fatalf("no signature write among %v", rec.writes)
	}
	if tag := slices.IndexFunc(rec.writes, func(w string) bool { return strings.HasSuffix(w, "/manifests/4.2.0.16.1") }); tag < firstSig {
		t.Fatalf("the tag (write %d) came before the first signature write (%d): %v", tag+1, firstSig+1, rec.writes)
	}
	n := 0 // 1-based: the write after the last manifest put by digest before the first signature
	for i := firstSig - 1; i >= 0; i-- {
		if strings.Contains(rec.writes[i], "/manifests/sha256:") {
			n = i + 2
			break
		}
	}
	if n == 0 {
		t.Fatalf("no image push before the signature in %v", rec.writes)
	}

	f := newFixtureOn(t, reg, nil, crashRecipe(t, "sign"))
	s := newSigner(t, markedClient("dying"))
	f.deps.Signer = s
	m := delivery(f, base)
	step := steps.add(t, "dying", n, "exit-before")
	dying, disconnect := f.processConn(marked("dying"))
	startDelivery(t, dying, m, step)
	disconnect()
	if tags := f.tags("acme/am-sign"); len(tags) != 0 {
		t.Fatalf("tagged before it was signed: %v", tags)
	}

	f.deps.Signer = signer{s: s.s, client: f.client}
	got := rebuiltOf(t, redeliver(t, f.process(nil), m))
	target := f.reg.Ref("acme/am-sign")
	art, err := f.client.Inspect(ctx, target+"@"+got.GetDigest())
	if err != nil {
		t.Fatal(err)
	}
	images := []string{target + "@" + got.GetDigest()}
	for _, p := range art.Platforms {
		images = append(images, target+"@"+p.Digest)
	}
	for _, img := range images {
		if err := signature.Verify(ctx, f.client, img, []*signature.Verifier{s.s.Verifier()}); err != nil {
			t.Errorf("%s: %v", img, err)
		}
		_, body, err := f.client.ManifestBody(ctx, target+":"+strings.Replace(img[strings.Index(img, "@")+1:], ":", "-", 1)+".sig")
		if err != nil {
			t.Fatal(err)
		}
		var sig struct{ Layers []json.RawMessage }
		if err := json.Unmarshal(body, &sig); err != nil || len(sig.Layers) != 1 {
			t.Errorf("%s: %d signatures (%v), want one", img, len(sig.Layers), err)
		}
	}
	if tags := f.tags("acme/am-sign"); !slices.Contains(tags, got.GetTag()) {
		t.Errorf("target tags %v, want %s", tags, got.GetTag())
	}
}
