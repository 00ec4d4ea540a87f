package promoter_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/secret"
	"github.com/harborflow/harborflow/pkg/signature"
	"github.com/harborflow/harborflow/services/promoter"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// env is a stand-in with projects dev and staging, a webhook policy on staging, and a copier for it.
type env struct {
	h      *harbortest.Server
	hc     *harbor.Client
	rc     *registry.Client
	copier *promoter.Copier
	src    *registrytest.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	h := harbortest.New(t)
	h.CreateProject(t, "dev", false, nil)
	h.CreateProject(t, "staging", false, nil)
	user, pass := h.Admin()
	hc, err := harbor.New(harbor.Host{Name: h.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)
	src := registrytest.New(t)
	rc, err := registry.New([]registry.Host{
		{Name: h.Host(), Username: user, Password: secret.Secret(pass), PlainHTTP: true}, src.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(sink.Close)
	if _, err := hc.CreateWebhookPolicy(ctxT(t), "staging", harbor.WebhookPolicy{Name: "count", Enabled: true,
		EventTypes: []string{"PUSH_ARTIFACT"}, Targets: []harbor.WebhookTarget{{Type: "http", Address: sink.URL,
			PayloadFormat: harbor.PayloadDefault}}}); err != nil {
		t.Fatal(err)
	}
	return &env{h: h, hc: hc, rc: rc, src: src,
		copier: &promoter.Copier{Registry: rc, Harbors: map[string]*harbor.Client{h.Host(): hc}}}
}

// push copies an image from the test registry into the stand-in under each tag, as a build would.
func (e *env) push(t *testing.T, p registrytest.Pushed, repo string, tags ...string) {
	t.Helper()
	ctx := ctxT(t)
	if err := e.rc.Copy(ctx, p.Ref, e.h.Host()+"/"+repo); err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		if err := e.rc.Tag(ctx, e.h.Host()+"/"+repo+"@"+p.Digest, tag); err != nil {
			t.Fatal(err)
		}
	}
}

// pushTagged pushes from by its tag, as cosign pushes a signature, so that the stand-in records an accessory.
func (e *env) pushTagged(t *testing.T, from, to string) {
	t.Helper()
	user, pass := e.h.Admin()
	rc := regclient.New(regclient.WithConfigHost(rcconfig.Host{Name: e.h.Host(), TLS: rcconfig.TLSDisabled, User: user, Pass: pass},
		rcconfig.Host{Name: e.src.Host, TLS: rcconfig.TLSDisabled}))
	f, err := ref.New(from)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ref.New(e.h.Host() + "/" + to)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.ImageCopy(ctxT(t), f, d); err != nil {
		t.Fatal(err)
	}
}

// pushes counts the PUSH_ARTIFACT deliveries of project staging so far.
func (e *env) pushes(t *testing.T) int {
	t.Helper()
	if err := e.h.WaitDeliveries(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range e.h.Deliveries() {
		if d.Event.Type == "PUSH_ARTIFACT" && d.Attempt == 1 {
			n++
		}
	}
	return n
}

func (e *env) digestOf(t *testing.T, ref string) string {
	t.Helper()
	d, err := e.rc.Resolve(ctxT(t), e.h.Host()+"/"+ref)
	if err != nil {
		t.Fatalf("resolving %s: %v", ref, err)
	}
	return d.Digest
}

func outcomes(r promoter.CopyResult) string {
	var s []string
	for _, t := range r.Tags {
		s = append(s, t.String())
	}
	return strings.Join(s, ", ")
}

// TestCopyWithinHarbor promotes a signed two-platform index dev → staging with Harbor's copy API: the
// signature comes along, the unique tag and the rolling tags point at it, and a second run (a redelivery)
// copies nothing, moves nothing and fires no PUSH_ARTIFACT.
func (e *env) req(repo, digest, tag string, rolling ...string) promoter.CopyRequest {
	return promoter.CopyRequest{From: promoter.Location{Registry: e.h.Host(), Repository: "dev/" + repo},
		To: promoter.Location{Registry: e.h.Host(), Repository: "staging/" + repo}, Digest: digest, Tag: tag, Rolling: rolling}
}

func TestCopyWithinHarbor(t *testing.T) {
	e := newEnv(t)
	idx := e.src.PushIndex(t, "wso2/am:4.2.0.16.3", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64"}, {Platform: "linux/arm64"}}})
	sig := e.src.PushSignature(t, "wso2/am", idx)
	e.push(t, idx, "dev/am", "4.2.0.16.3", "4.2.0", "latest")
	e.pushTagged(t, e.src.Ref("wso2/am:"+sig.Tag), "dev/am:"+sig.Tag)
	ctx := ctxT(t)

	res, err := e.copier.Copy(ctx, e.req("am", idx.Digest, "4.2.0.16.3", "4.2.0", "latest"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if !res.Copied || res.Method != promoter.CopyHarbor {
		t.Errorf("copied %v by %q, want Harbor's copy API", res.Copied, res.Method)
	}
	if res.Attestation != (promoter.TagResult{}) {
		t.Errorf("attestation %+v for an image without one", res.Attestation)
	}
	if got := res.Pointing(); !slices.Equal(got, []string{"4.2.0.16.3", "4.2.0", "latest"}) || res.Blocked() != "" ||
		slices.ContainsFunc(res.Tags, func(r promoter.TagResult) bool { return r.Outcome != promoter.TagMoved }) {
		t.Errorf("tags: %s", outcomes(res))
	}
	for _, tag := range []string{"4.2.0.16.3", "4.2.0", "latest"} {
		if d := e.digestOf(t, "staging/am:"+tag); d != idx.Digest {
			t.Errorf("staging/am:%s is %s, want %s", tag, d, idx.Digest)
		}
	}
	if acc, err := e.hc.Accessories(ctx, "dev", "am", idx.Digest); err != nil || len(acc) != 1 {
		t.Fatalf("accessories in dev: %v, %v", acc, err)
	}
	acc, err := e.hc.Accessories(ctx, "staging", "am", idx.Digest)
	if err != nil || len(acc) != 1 || acc[0].Type != "signature.cosign" {
		t.Errorf("accessories at staging: %v, %v; want the signature", acc, err)
	}

	before := e.pushes(t)
	res, err = e.copier.Copy(ctx, e.req("am", idx.Digest, "4.2.0.16.3", "4.2.0", "latest"))
	if err != nil {
		t.Fatalf("second Copy: %v", err)
	}
	if res.Copied || len(res.Pointing()) != 3 || slices.ContainsFunc(res.Tags, func(r promoter.TagResult) bool { return r.Outcome != promoter.TagAlreadyThere }) {
		t.Errorf("second run: copied %v, %s", res.Copied, outcomes(res))
	}
	if after := e.pushes(t); after != before {
		t.Errorf("second run fired %d PUSH_ARTIFACT", after-before)
	}
}

// TestCopyKeepsRollingTagOnNewer: staging's latest is on 4.2.0.17.1; promoting 4.2.0.16.3 (tagged latest in
// dev) neither lets Harbor's copy carry latest there nor moves it: the registry copy is used, and latest is
// kept on the newer image while the unique tag is placed.
func TestCopyKeepsRollingTagOnNewer(t *testing.T) {
	e := newEnv(t)
	newer := e.src.PushImage(t, "wso2/is:4.2.0.17.1", registrytest.Image{Labels: map[string]string{"update_level": "17"}})
	e.push(t, newer, "staging/is", "4.2.0.17.1", "latest")
	old := e.src.PushImage(t, "wso2/is:4.2.0.16.3", registrytest.Image{Labels: map[string]string{"update_level": "16"}})
	e.push(t, old, "dev/is", "4.2.0.16.3", "latest")

	res, err := e.copier.Copy(ctxT(t), e.req("is", old.Digest, "4.2.0.16.3", "latest"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if res.Method != promoter.CopyRegistry {
		t.Errorf("method %q, want the registry copy (Harbor's would carry latest back)", res.Method)
	}
	if len(res.Tags) != 2 || res.Tags[0].Outcome != promoter.TagMoved || res.Tags[1].Outcome != promoter.TagKeptOnNewer ||
		res.Tags[1].String() != "latest: kept on newer 4.2.0.17.1" {
		t.Errorf("tags: %s", outcomes(res))
	}
	if d := e.digestOf(t, "staging/is:latest"); d != newer.Digest {
		t.Errorf("latest moved backwards to %s", d)
	}
	if d := e.digestOf(t, "staging/is:4.2.0.16.3"); d != old.Digest {
		t.Errorf("4.2.0.16.3 is %s", d)
	}
}

// TestCopyImmutableRule: staging protects latest; the copy places the unique tag, reports latest as blocked
// (a result, not an error to retry), and a second run reports the same without writing anything.
func TestCopyImmutableRule(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	prev := e.src.PushImage(t, "wso2/apim:4.2.0.15.1", registrytest.Image{Labels: map[string]string{"update_level": "15"}})
	e.push(t, prev, "staging/apim", "4.2.0.15.1", "latest")
	if _, err := e.hc.CreateImmutableRule(ctx, "staging", harbor.ImmutableRule{Action: "immutable", Template: "immutable_template",
		TagSelectors:   []harbor.Selector{{Kind: "doublestar", Decoration: "matches", Pattern: "latest"}},
		ScopeSelectors: map[string][]harbor.Selector{"repository": {{Kind: "doublestar", Decoration: "repoMatches", Pattern: "**"}}}}); err != nil {
		t.Fatal(err)
	}
	img := e.src.PushImage(t, "wso2/apim:4.2.0.16.3", registrytest.Image{Labels: map[string]string{"update_level": "16"}})
	e.push(t, img, "dev/apim", "4.2.0.16.3", "latest")

	res, err := e.copier.Copy(ctx, e.req("apim", img.Digest, "4.2.0.16.3", "latest"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if !res.Copied || len(res.Tags) != 2 || res.Tags[0].Outcome != promoter.TagMoved || res.Tags[1].Outcome != promoter.TagRefused {
		t.Errorf("copied %v, tags: %s", res.Copied, outcomes(res))
	}
	if want := "blocked: tag latest is protected by an immutable rule in staging/apim"; res.Blocked() != want {
		t.Errorf("Blocked() = %q, want %q", res.Blocked(), want)
	}
	if d := e.digestOf(t, "staging/apim:latest"); d != prev.Digest {
		t.Errorf("latest moved to %s", d)
	}
	before := e.pushes(t)
	res2, err := e.copier.Copy(ctx, e.req("apim", img.Digest, "4.2.0.16.3", "latest"))
	if err != nil || res2.Copied || res2.Blocked() != res.Blocked() || res2.Tags[0].Outcome != promoter.TagAlreadyThere {
		t.Errorf("second run: %v, copied %v, %s", err, res2.Copied, outcomes(res2))
	}
	if after := e.pushes(t); after != before {
		t.Errorf("second run fired %d PUSH_ARTIFACT", after-before)
	}
}

// TestCopyAcrossRegistries carries a single image with its SBOM referrer from one registry to another and
// tags it there; a second run changes nothing.
func TestCopyAcrossRegistries(t *testing.T) {
	src, dst := registrytest.New(t), registrytest.New(t)
	img := src.PushImage(t, "dev/am:4.2.0.16.3", registrytest.Image{})
	sbom := src.PushSBOM(t, "dev/am", img)
	var counter registry.Counter
	rc, err := registry.New([]registry.Host{src.Settings(), dst.Settings()}, registry.WithTransport(counter.Wrap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	c := &promoter.Copier{Registry: rc}
	req := promoter.CopyRequest{From: promoter.Location{Registry: src.Host, Repository: "dev/am"},
		To: promoter.Location{Registry: dst.Host, Repository: "prod/am"}, Digest: img.Digest, Tag: "4.2.0.16.3",
		Rolling: []string{"4.2.0", "latest"}}
	ctx := ctxT(t)
	res, err := c.Copy(ctx, req)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if !res.Copied || res.Method != promoter.CopyRegistry || len(res.Pointing()) != 3 {
		t.Errorf("copied %v by %q, tags: %s", res.Copied, res.Method, outcomes(res))
	}
	if _, err := rc.Resolve(ctx, dst.Ref("prod/am@"+sbom.Digest)); err != nil {
		t.Errorf("the SBOM referrer was not carried: %v", err)
	}
	counter.Reset()
	res, err = c.Copy(ctx, req)
	if err != nil || res.Copied || len(res.Pointing()) != 3 {
		t.Errorf("second run: %v, copied %v, %s", err, res.Copied, outcomes(res))
	}
	if n := counter.Snapshot(); n.ManifestPut != 0 {
		t.Errorf("second run wrote %d manifests", n.ManifestPut)
	}
}

// TestCopyResumes: a run cut short after the unique tag (a crash, then a redelivery) finishes with each
// rolling tag moved once: the second run moves only what is missing and fires one PUSH_ARTIFACT per tag.
func TestCopyResumes(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	prev := e.src.PushImage(t, "wso2/mi:4.2.0.15.1", registrytest.Image{Labels: map[string]string{"update_level": "15"}})
	e.push(t, prev, "staging/mi", "4.2.0.15.1", "4.2.0", "latest")
	img := e.src.PushImage(t, "wso2/mi:4.2.0.16.3", registrytest.Image{Labels: map[string]string{"update_level": "16"}})
	e.push(t, img, "dev/mi", "4.2.0.16.3")

	if _, err := e.copier.Copy(ctx, e.req("mi", img.Digest, "4.2.0.16.3")); err != nil { // stops before the rolling tags
		t.Fatalf("first run: %v", err)
	}
	before := e.pushes(t)
	res, err := e.copier.Copy(ctx, e.req("mi", img.Digest, "4.2.0.16.3", "4.2.0", "latest"))
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if res.Copied || outcomes(res) != "4.2.0.16.3: already there, 4.2.0: moved, latest: moved" {
		t.Errorf("second run: copied %v, %s", res.Copied, outcomes(res))
	}
	if n := e.pushes(t) - before; n != 2 {
		t.Errorf("second run fired %d PUSH_ARTIFACT, want one per rolling tag moved", n)
	}
	for _, tag := range []string{"4.2.0", "latest"} {
		if d := e.digestOf(t, "staging/mi:"+tag); d != img.Digest {
			t.Errorf("%s is %s", tag, d)
		}
	}
}

// attTag is cosign's attestation tag of digest.
func attTag(digest string) string { return strings.Replace(digest, ":", "-", 1) + ".att" }

// attest attests image (registry/repository@digest) with signer as the rebuilder does: harborflow's SLSA
// provenance of a build on base (registry/repository@digest).
func attest(t *testing.T, rc *registry.Client, signer *signature.Signer, image, base string) {
	t.Helper()
	r, err := imageref.Parse(image)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st, err := provenance.Statement(provenance.Build{Image: r.Name(), Digest: r.Digest, Recipe: "am", Builder: "overlay",
		Tag: "4.2.0.16.3", Base: "registry.wso2.com/wso2-apim/am:4.2.0", BaseImage: base, EventID: "evt-1", Version: "test",
		Started: at, Finished: at.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signer.Attest(ctxT(t), rc, image, st); err != nil {
		t.Fatalf("attesting %s: %v", image, err)
	}
}

// wso2Base is the base the tests' provenance names.
var wso2Base = "registry.wso2.com/wso2-apim/am@sha256:" + strings.Repeat("b", 64)

// newSigner is a new signing key.
func newSigner(t *testing.T) *signature.Signer {
	t.Helper()
	s, err := signature.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pushesOf counts the PUSH_ARTIFACT deliveries of project staging so far that carry tag.
func (e *env) pushesOf(t *testing.T, tag string) int {
	t.Helper()
	if err := e.h.WaitDeliveries(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range e.h.Deliveries() {
		if d.Event.Type == "PUSH_ARTIFACT" && d.Attempt == 1 && d.Event.Tag == tag {
			n++
		}
	}
	return n
}

// TestCopyWithinHarborCarriesTheAttestation: Harbor's copy carries a cosign signature (an accessory there) but
// not cosign's attestation tag, an ordinary root artifact in Harbor. The copier copies the attestation first,
// by tag; in staging both verify against the promoted digest, and the attestation is the same manifest as in
// dev. A second run (a redelivery) copies and fires nothing.
func TestCopyWithinHarborCarriesTheAttestation(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	idx := e.src.PushIndex(t, "wso2/am:4.2.0.16.3", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64"}, {Platform: "linux/arm64"}}})
	e.push(t, idx, "dev/am", "4.2.0.16.3", "latest")
	signer := newSigner(t)
	dev := e.h.Host() + "/dev/am@" + idx.Digest
	if _, err := signer.Sign(ctx, e.rc, dev); err != nil {
		t.Fatal(err)
	}
	attest(t, e.rc, signer, dev, wso2Base)

	res, err := e.copier.Copy(ctx, e.req("am", idx.Digest, "4.2.0.16.3", "latest"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if res.Method != promoter.CopyHarbor || res.Attestation.Outcome != promoter.TagMoved || res.Attestation.Tag != attTag(idx.Digest) {
		t.Errorf("copied by %q, attestation %+v; want Harbor's copy and the attestation moved", res.Method, res.Attestation)
	}
	staging := e.h.Host() + "/staging/am@" + idx.Digest
	keys := []*signature.Verifier{signer.Verifier()}
	if err := signature.Verify(ctx, e.rc, staging, keys); err != nil {
		t.Errorf("the signature in staging: %v", err)
	}
	st, err := signature.VerifyAttestation(ctx, e.rc, staging, keys, provenance.PredicateType)
	if err != nil {
		t.Fatalf("the attestation in staging: %v", err)
	}
	if b, err := provenance.Parse(st); err != nil || b.Digest != idx.Digest || b.BaseImage != wso2Base {
		t.Errorf("the provenance in staging: %+v, %v", b, err)
	}
	if d := e.digestOf(t, "staging/am:"+attTag(idx.Digest)); d != e.digestOf(t, "dev/am:"+attTag(idx.Digest)) {
		t.Errorf("staging's attestation is %s, not dev's manifest", d)
	}
	// Harbor lists the signature as the index's accessory, and the attestation as an artifact of its own.
	if acc, err := e.hc.Accessories(ctx, "staging", "am", idx.Digest); err != nil || len(acc) != 1 {
		t.Errorf("accessories at staging: %v, %v; want the signature only", acc, err)
	}
	if n := e.pushesOf(t, attTag(idx.Digest)); n != 1 {
		t.Errorf("%d PUSH_ARTIFACT for the attestation in staging, want 1", n)
	}

	before := e.pushes(t)
	res, err = e.copier.Copy(ctx, e.req("am", idx.Digest, "4.2.0.16.3", "latest"))
	if err != nil || res.Copied || res.Attestation != (promoter.TagResult{}) {
		t.Errorf("second run: %v, copied %v, attestation %+v", err, res.Copied, res.Attestation)
	}
	if after := e.pushes(t); after != before {
		t.Errorf("second run fired %d PUSH_ARTIFACT", after-before)
	}
}

// TestCopyResumesAfterTheAttestation: a run cut short after the attestation's copy (a crash before the image's)
// finishes on the next run without copying the attestation again.
func TestCopyResumesAfterTheAttestation(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	img := e.src.PushImage(t, "wso2/am:4.2.0.16.3", registrytest.Image{})
	e.push(t, img, "dev/am", "4.2.0.16.3")
	signer := newSigner(t)
	attest(t, e.rc, signer, e.h.Host()+"/dev/am@"+img.Digest, wso2Base)
	// What the first run did before it died.
	if err := e.hc.CopyArtifact(ctx, "staging", "am", "dev/am:"+attTag(img.Digest)); err != nil {
		t.Fatal(err)
	}

	res, err := e.copier.Copy(ctx, e.req("am", img.Digest, "4.2.0.16.3"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if !res.Copied || res.Method != promoter.CopyHarbor || res.Attestation.Outcome != promoter.TagAlreadyThere {
		t.Errorf("copied %v by %q, attestation %+v; want the image copied and the attestation found there", res.Copied, res.Method, res.Attestation)
	}
	if n := e.pushesOf(t, attTag(img.Digest)); n != 1 {
		t.Errorf("%d PUSH_ARTIFACT for the attestation in staging, want the first run's only", n)
	}
	if _, err := signature.VerifyAttestation(ctx, e.rc, e.h.Host()+"/staging/am@"+img.Digest, []*signature.Verifier{signer.Verifier()},
		provenance.PredicateType); err != nil {
		t.Errorf("the attestation in staging: %v", err)
	}
}

// TestCopyKeepsAnImmutableAttestation: staging already has another attestation tag of the digest, protected
// by an immutable rule. Harbor refuses to move it; the copier reports that and promotes the image all the
// same, leaving staging's attestation as it was.
func TestCopyKeepsAnImmutableAttestation(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	img := e.src.PushImage(t, "wso2/am:4.2.0.16.3", registrytest.Image{})
	e.push(t, img, "dev/am", "4.2.0.16.3")
	attest(t, e.rc, newSigner(t), e.h.Host()+"/dev/am@"+img.Digest, wso2Base)
	attest(t, e.rc, newSigner(t), e.h.Host()+"/staging/am@"+img.Digest, wso2Base)
	kept := e.digestOf(t, "staging/am:"+attTag(img.Digest))
	if _, err := e.hc.CreateImmutableRule(ctx, "staging", harbor.ImmutableRule{Action: "immutable", Template: "immutable_template",
		TagSelectors:   []harbor.Selector{{Kind: "doublestar", Decoration: "matches", Pattern: "*.att"}},
		ScopeSelectors: map[string][]harbor.Selector{"repository": {{Kind: "doublestar", Decoration: "repoMatches", Pattern: "**"}}}}); err != nil {
		t.Fatal(err)
	}

	res, err := e.copier.Copy(ctx, e.req("am", img.Digest, "4.2.0.16.3"))
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if !res.Copied || res.Blocked() != "" || res.Attestation.Outcome != promoter.TagRefused ||
		!strings.Contains(res.Attestation.Reason, "immutable rule in staging/am") {
		t.Errorf("copied %v, blocked %q, attestation %+v", res.Copied, res.Blocked(), res.Attestation)
	}
	if d := e.digestOf(t, "staging/am:4.2.0.16.3"); d != img.Digest {
		t.Errorf("staging/am:4.2.0.16.3 is %s", d)
	}
	if d := e.digestOf(t, "staging/am:"+attTag(img.Digest)); d != kept {
		t.Errorf("staging's protected attestation moved to %s", d)
	}
}
