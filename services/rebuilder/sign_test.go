package rebuilder_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
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

func (s signer) Attest(ctx context.Context, image string, statement []byte) error {
	_, err := s.s.Attest(ctx, s.client, image, statement)
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
// signature that verifies with the signer's key, the index a signed SLSA provenance that says how it was
// made, and a redelivery of the same trigger adds no signature and no attestation.
func TestRebuiltImagesAreSigned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, overlayRecipe(t))
	s := newSigner(t, f.client)
	f.deps.Signer, f.deps.Version = s, "v1.2.3-test"
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

	att := checkProvenance(t, f, s, got, m.ID, base)

	again := rebuiltOf(t, redeliver(t, f.process(nil), m))
	if again.GetDigest() != got.GetDigest() {
		t.Fatalf("the redelivery built %s, want %s", again.GetDigest(), got.GetDigest())
	}
	if d, err := f.client.Resolve(ctx, again.GetProvenance()); err != nil || d.Digest != att {
		t.Errorf("the attestation changed on a redelivery: %v %v, want %s", d, err, att)
	}
	for img, want := range sigs {
		d, err := f.client.Resolve(ctx, target+":"+strings.Replace(img[strings.Index(img, "@")+1:], ":", "-", 1)+".sig")
		if err != nil || d.Digest != want {
			t.Errorf("the signature of %s changed on a redelivery: %v %v, want %s", img, d, err, want)
		}
	}
}

// TestCosignVerifiesEveryBuilder: what each builder (overlay, dockerfile, rebase) rebuilds, on a base of one
// platform and of two, passes `cosign verify --key` on the image and on each platform manifest, and `cosign
// verify-attestation --key --type slsaprovenance1` on the image, whose statement names the builder.
func TestCosignVerifiesEveryBuilder(t *testing.T) {
	t.Parallel()
	for name, platforms := range map[string][]string{"one platform": {"linux/amd64"}, "two platforms": {"linux/amd64", "linux/arm64"}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := contextDir(t)
			if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY home/ /home/\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			f := newFixture(t, nil,
				config.Rebuild{Name: "overlay", Base: "wso2/am:4.2.0", Builder: config.BuilderOverlay, Context: dir, Target: "acme/overlay"},
				config.Rebuild{Name: "dockerfile", Base: "wso2/am:4.2.0", Builder: config.BuilderDockerfile, Context: dir, Target: "acme/dockerfile"},
				config.Rebuild{Name: "rebase", Base: "wso2/am:4.2.0", Builder: config.BuilderRebase, Image: "acme/own:4.2.0.15.1", Target: "acme/rebase"})
			s := newSigner(t, f.client)
			f.deps.Signer = s
			pub := filepath.Join(t.TempDir(), "cosign.pub")
			if err := os.WriteFile(pub, s.s.Verifier().PublicKeyPEM(), 0o600); err != nil {
				t.Fatal(err)
			}
			f.rb = f.process(nil) // with the signer
			f.consume()
			derivedOn(t, f, f.base("wso2/am:4.2.0.15", "15", platforms...), "acme/own:4.2.0.15.1")
			b16 := f.base("wso2/am:4.2.0.16", "16", platforms...)
			f.publish(f.inspected(b16, "4.2.0.16", 16))
			f.settle()
			got := f.rebuilt()
			if len(got) != 3 {
				t.Fatalf("image.rebuilt %v, want one per builder; dead letters %v", got, f.dlq())
			}
			offline := []string{"--offline=true", "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry"}
			for _, r := range got {
				image := r.GetTarget() + "@" + r.GetDigest()
				images := []string{image}
				art, err := f.client.Manifest(ctx, image)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range art.Platforms {
					images = append(images, r.GetTarget()+"@"+p.Digest)
				}
				want := 1 // the image, and each platform's of an index
				if len(platforms) > 1 {
					want += len(platforms)
				}
				if len(images) != want {
					t.Errorf("%s: %d images to verify for %d platforms", r.GetBuilder(), len(images), len(platforms))
				}
				for _, img := range images {
					if out, err := buildahtest.Cosign(t, nil, append(append([]string{"verify", "--key", pub}, offline...), img)...); err != nil {
						t.Errorf("%s: %v\n%s", r.GetBuilder(), err, out)
					}
				}
				out, err := buildahtest.Cosign(t, nil, append(append([]string{"verify-attestation", "--key", pub, "--type", "slsaprovenance1"}, offline...), image)...)
				if err != nil {
					t.Errorf("%s: %v\n%s", r.GetBuilder(), err, out)
					continue
				}
				if st := statementIn(t, out); st.Builder != r.GetBuilder() || st.Digest != r.GetDigest() || st.BaseImage != b16.Ref {
					t.Errorf("%s: cosign verify-attestation printed a statement of %s %s on %s", r.GetBuilder(), st.Builder, st.Digest, st.BaseImage)
				}
			}
		})
	}
}

// statementIn reads the provenance in the envelope cosign verify-attestation printed (a JSON line).
func statementIn(t *testing.T, out string) provenance.Build {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		var env struct{ Payload []byte }
		if json.Unmarshal([]byte(line), &env) != nil || len(env.Payload) == 0 {
			continue
		}
		b, err := provenance.Parse(env.Payload)
		if err != nil {
			t.Fatalf("the statement cosign printed: %v", err)
		}
		return b
	}
	t.Fatalf("cosign verify-attestation printed no envelope:\n%s", out)
	return provenance.Build{}
}

// TestCrashBetweenPushAndSign: a process dies after it pushed the image, before its first signature write, or
// after its signatures and before its attestation; nothing is tagged yet. The redelivery, in another process
// with the same key, signs the index and each platform manifest and attests the index, each once, and then
// tags it: one signature and one attestation each, and no tag on an unsigned or unattested image.
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

	// The writes of a signed build nothing stops: after the image's push come the signatures', then the
	// attestation's, then the tag.
	rec := steps.add(t, "ref", 0, "")
	ref := newFixtureOn(t, reg, nil, crashRecipe(t, "signref"))
	ref.deps.Signer = newSigner(t, markedClient("ref"))
	base := ref.base("wso2/am:4.2.0.16", "16", "linux/amd64", "linux/arm64")
	rebuiltOf(t, redeliver(t, ref.process(marked("ref")), delivery(ref, base)))
	has := func(s string) func(string) bool { return func(w string) bool { return strings.Contains(w, s) } }
	firstSig, firstAtt := slices.IndexFunc(rec.writes, has(".sig")), slices.IndexFunc(rec.writes, has(".att"))
	tag := slices.IndexFunc(rec.writes, func(w string) bool { return strings.HasSuffix(w, "/manifests/4.2.0.16.1") })
	if firstSig < 0 || firstAtt < firstSig || tag < firstAtt {
		t.Fatalf("want the signatures' writes, then the attestation's, then the tag; got %v", rec.writes)
	}
	// after returns the 1-based number of the write after the last write before end that contains s.
	after := func(end int, s string) int {
		for i := end - 1; i >= 0; i-- {
			if strings.Contains(rec.writes[i], s) {
				return i + 2
			}
		}
		t.Fatalf("no write with %s before write %d in %v", s, end+1, rec.writes)
		return 0
	}
	for name, n := range map[string]int{
		"sign":   after(firstSig, "/manifests/sha256:"), // the first signature write
		"attest": after(firstAtt, ".sig"),               // the first attestation write
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixtureOn(t, reg, nil, crashRecipe(t, name))
			s := newSigner(t, markedClient(name))
			f.deps.Signer = s
			m := delivery(f, base)
			step := steps.add(t, name, n, "exit-before")
			dying, disconnect := f.processConn(marked(name))
			startDelivery(t, dying, m, step)
			disconnect()
			for _, tag := range f.tags("acme/am-" + name) {
				if _, _, ok := registry.TagAccessory(tag); !ok {
					t.Fatalf("tagged %s before it was signed and attested", tag)
				}
			}

			f.deps.Signer = signer{s: s.s, client: f.client}
			got := rebuiltOf(t, redeliver(t, f.process(nil), m))
			target := f.reg.Ref("acme/am-" + name)
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
				if n := layers(t, f, target+":"+strings.Replace(img[strings.Index(img, "@")+1:], ":", "-", 1)+".sig"); n != 1 {
					t.Errorf("%s: %d signatures, want one", img, n)
				}
			}
			checkProvenance(t, f, signer{s: s.s, client: f.client}, got, m.ID, base)
			if n := layers(t, f, got.GetProvenance()); n != 1 {
				t.Errorf("%d attestations, want one", n)
			}
			if tags := f.tags("acme/am-" + name); !slices.Contains(tags, got.GetTag()) {
				t.Errorf("target tags %v, want %s", tags, got.GetTag())
			}
		})
	}
}

// layers counts the layers of the manifest ref points to: a signature's signatures.
func layers(t *testing.T, f *fixture, ref string) int {
	t.Helper()
	_, body, err := f.client.ManifestBody(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Layers []json.RawMessage }
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return len(m.Layers)
}

// checkProvenance checks the provenance of the rebuilt image got, triggered by event id with base: where
// image.rebuilt says, it verifies with the signer's key and says what the build was made of. It returns the
// digest of the attestation manifest.
func checkProvenance(t *testing.T, f *fixture, s signer, got *harborflowv1.ImageRebuilt, id string, base registrytest.Pushed) string {
	t.Helper()
	ctx := context.Background()
	image := got.GetTarget() + "@" + got.GetDigest()
	if want := got.GetTarget() + ":" + strings.Replace(got.GetDigest(), ":", "-", 1) + ".att"; got.GetProvenance() != want {
		t.Errorf("image.rebuilt provenance %q, want %q", got.GetProvenance(), want)
	}
	st, err := signature.VerifyAttestation(ctx, f.client, image, []*signature.Verifier{s.s.Verifier()}, provenance.PredicateType)
	if err != nil {
		t.Fatalf("the provenance of %s: %v", image, err)
	}
	b, err := provenance.Parse(st)
	if err != nil {
		t.Fatal(err)
	}
	baseArt, err := f.client.Manifest(ctx, base.Ref)
	if err != nil {
		t.Fatal(err)
	}
	var platforms []provenance.Platform
	for _, p := range baseArt.Platforms {
		platforms = append(platforms, provenance.Platform{Platform: p.String(), Digest: p.Digest})
	}
	rc := f.recipes[0]
	ctxDigest, err := provenance.ContextDigest(rc.Context)
	if err != nil {
		t.Fatal(err)
	}
	want := provenance.Build{
		Image: got.GetTarget(), Digest: got.GetDigest(), Recipe: rc.Name, Builder: rc.Builder, Tag: got.GetTag(),
		Base: rc.Base, BaseImage: got.GetBase(), BasePlatforms: platforms, ContextDigest: ctxDigest,
		EventID: id, CorrelationID: got.GetCorrelationId(), Version: f.deps.Version,
		Started: got.GetStarted().AsTime(), Finished: got.GetFinished().AsTime(),
	}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("provenance\n%+v\nwant\n%+v", b, want)
	}
	if got.GetBase() != base.Ref || len(platforms) != len(got.GetPlatforms()) || b.Finished.Before(b.Started) || b.Started.IsZero() {
		t.Errorf("provenance names base %s (want %s), %d base platforms for %d built, %s – %s",
			b.BaseImage, base.Ref, len(platforms), len(got.GetPlatforms()), b.Started, b.Finished)
	}
	d, err := f.client.Resolve(ctx, got.GetProvenance())
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest
}
