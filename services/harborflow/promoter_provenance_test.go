package harborflow_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/mediatype"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
)

// Bases the tests' provenance names: one from the allowed registry, one from elsewhere.
var (
	wso2Base   = "registry.wso2.com/wso2-apim/am@sha256:" + strings.Repeat("b", 64)
	temurinJDK = "docker.io/library/eclipse-temurin@sha256:" + strings.Repeat("c", 64)
)

// fromWSO2 is a provenance gate that allows bases from registry.wso2.com only.
var fromWSO2 = &config.ProvenanceGate{Base: []string{"registry.wso2.com/**"}}

// attTag is cosign's attestation tag of digest.
func attTag(digest string) string { return strings.Replace(digest, ":", "-", 1) + ".att" }

// attest attests image (registry/repository@digest, in the stand-in) with signer as the rebuilder does:
// harborflow's SLSA provenance of a build on base.
func (f *flow) attest(t *testing.T, signer *signature.Signer, image, base string) {
	t.Helper()
	r, err := imageref.Parse(image)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st, err := provenance.Statement(provenance.Build{Image: r.Name(), Digest: r.Digest, Recipe: "acme-am", Builder: "overlay",
		Tag: "4.2.0.15", Base: "registry.wso2.com/wso2-apim/am:4.2.0", BaseImage: base, EventID: "evt-1", Version: "test",
		Started: at, Finished: at.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signer.Attest(f.ctx, f.reg, image, st); err != nil {
		t.Fatalf("attesting %s: %v", image, err)
	}
}

// pushAttested pushes img to the source registry as repo:tag and, before copying it into project of the
// stand-in (whose webhook starts its promotion), attests it there with signer on base: its first evaluation
// finds the attestation. It returns the image's digest.
func (f *flow) pushAttested(t *testing.T, project, repoTag string, img registrytest.Image, signer *signature.Signer, base string) string {
	t.Helper()
	pushed := f.src.PushImage(t, repoTag, img)
	repo, _, _ := strings.Cut(repoTag, ":")
	f.attest(t, signer, f.h+"/"+project+"/"+repo+"@"+pushed.Digest, base)
	from, _ := ref.New(f.src.Host + "/" + repoTag)
	to, _ := ref.New(f.h + "/" + project + "/" + repoTag)
	if err := f.rc.ImageCopy(f.ctx, from, to); err != nil {
		t.Fatalf("pushing %s into %s: %v", repoTag, project, err)
	}
	return pushed.Digest
}

// tamper rewrites the statement in the attestation of image (registry/repository@digest) so that it names base
// instead of was, keeping the envelope's signature and the layer's key mark: what someone who wants a base
// let through would do.
func (f *flow) tamper(t *testing.T, image, was, base string) {
	t.Helper()
	r, err := imageref.Parse(image)
	if err != nil {
		t.Fatal(err)
	}
	_, body, err := f.reg.ManifestBody(f.ctx, r.Name()+":"+attTag(r.Digest))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	layer := m["layers"].([]any)[0].(map[string]any)
	blob, err := f.reg.Blob(f.ctx, r.Name(), layer["digest"].(string), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	if err := json.Unmarshal(blob, &env); err != nil {
		t.Fatal(err)
	}
	st, err := base64.StdEncoding.DecodeString(env["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), was) {
		t.Fatalf("the statement does not name %s: %s", was, st)
	}
	env["payload"] = base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(string(st), was, base)))
	blob, _ = json.Marshal(env)
	d, err := f.reg.PutBlob(f.ctx, r.Name(), signature.MediaTypeDSSE, blob)
	if err != nil {
		t.Fatal(err)
	}
	layer["digest"], layer["size"] = d.Digest, d.Size
	body, _ = json.Marshal(m)
	if _, err := f.reg.PutManifest(f.ctx, r.Name(), attTag(r.Digest), mediatype.OCIManifest, body); err != nil {
		t.Fatal(err)
	}
}

// TestAttestedImagePromotesWithItsAttestation: with signed and provenance gates, an image attested with the
// configured key on a base from registry.wso2.com, and signed, is promoted; in wso2-staging its attestation
// (which Harbor's copy does not carry) and its signature (which it does) both verify against the promoted
// digest — with pkg/signature, and with cosign verify-attestation when cosign is installed.
func TestAttestedImagePromotesWithItsAttestation(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{Signed: true, Provenance: fromWSO2})}
	})
	digest := f.pushAttested(t, "wso2-dev", "am:4.2.0.15", am15, f.signer, wso2Base)
	// Signed once it is in wso2-dev (Harbor takes a signature as an accessory of an artifact it has): until
	// then the signed gate holds it, so the signature is there when it is copied.
	if _, err := f.signer.Sign(f.ctx, f.reg, f.h+"/wso2-dev/am@"+digest); err != nil {
		t.Fatal(err)
	}
	f.reevaluateUntil(t, "wso2-staging/am:4.2.0.15", digest)
	m := waitMessage(t, f.b, event.SubjectImagePromoted, promotedOf(digest, "wso2-staging"))
	if g := gate(m.GetGates(), "provenance"); g == nil || !g.GetPassed() ||
		g.GetReason() != "provenance verified: built on registry.wso2.com/wso2-apim/am@sha256:bbbbbbbbbbbb, allowed by registry.wso2.com/**" {
		t.Errorf("promoted with gates %v", m.GetGates())
	}

	promoted := f.h + "/wso2-staging/am@" + digest
	keys := []*signature.Verifier{f.signer.Verifier()}
	if err := signature.Verify(f.ctx, f.reg, promoted, keys); err != nil {
		t.Errorf("the signature in wso2-staging: %v", err)
	}
	st, err := signature.VerifyAttestation(f.ctx, f.reg, promoted, keys, provenance.PredicateType)
	if err != nil {
		t.Fatalf("the attestation in wso2-staging: %v", err)
	}
	if b, err := provenance.Parse(st); err != nil || b.Digest != digest || b.BaseImage != wso2Base {
		t.Errorf("the provenance in wso2-staging: %+v, %v", b, err)
	}

	cosign := buildahtest.Tool(t, "cosign")
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pub, f.signer.Verifier().PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, _ := json.Marshal(map[string]any{"auths": map[string]any{f.h: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(f.user + ":" + f.pass))}}})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cosign, "verify-attestation", "--key", pub, "--type", "slsaprovenance1", "--offline=true",
		"--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry", promoted)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "DOCKER_CONFIG="+dir)
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("cosign verify-attestation %s: %v\n%s", promoted, err, out)
	}
}

// TestProvenanceBlocks: a provenance gate allowing registry.wso2.com blocks, each with its reason, an image
// built on a base from elsewhere, one attested with a key signing.public_keys does not list, and one whose
// attestation was altered to name an allowed base; none reaches wso2-staging.
func TestProvenanceBlocks(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{Provenance: fromWSO2})}
	})
	image := func(level string) registrytest.Image {
		return registrytest.Image{User: "802", Layer: level, Labels: map[string]string{"update_level": level}}
	}
	elsewhere := f.pushAttested(t, "wso2-dev", "am:4.2.0.15", image("15"), f.signer, temurinJDK)
	foreign := f.pushAttested(t, "wso2-dev", "am:4.2.0.16", image("16"), newSigningKey(t), wso2Base)
	tampered := f.src.PushImage(t, "am:4.2.0.17", image("17")).Digest
	f.attest(t, f.signer, f.h+"/wso2-dev/am@"+tampered, temurinJDK)
	f.tamper(t, f.h+"/wso2-dev/am@"+tampered, "docker.io/library/eclipse-temurin", "registry.wso2.com/wso2-apim/am")
	if d := f.push(t, "wso2-dev", "am:4.2.0.17", image("17")); d != tampered {
		t.Fatalf("pushed %s, want %s", d, tampered)
	}

	for _, tc := range []struct{ what, digest, reason, unblock string }{
		{"a base from elsewhere", elsewhere,
			"base docker.io/library/eclipse-temurin is not from an allowed repository: allowed registry.wso2.com/**",
			"a build on a base from registry.wso2.com/** (or add docker.io/library/eclipse-temurin to provenance.base)"},
		{"another key", foreign, short(foreign) + " is attested, but by no key of signing.public_keys", "cosign attest --key cosign.key"},
		{"tampered", tampered, "the provenance attestation of " + short(tampered) + " does not match it (tampered, or made for another image)",
			"cosign attest --key cosign.key"},
	} {
		b := waitMessage(t, f.b, event.SubjectImageBlocked, blockedOf(tc.digest))
		g := gate(b.GetGates(), "provenance")
		if g == nil || g.GetVerdict() != "blocked" || g.GetReason() != tc.reason || !strings.Contains(g.GetUnblock(), tc.unblock) {
			t.Errorf("%s: gates %v\nwant reason %q, unblock with %q", tc.what, b.GetGates(), tc.reason, tc.unblock)
		}
	}
	// The round the promoter's loop makes over them changes nothing.
	f.reevaluate(t)
	for _, tag := range []string{"4.2.0.15", "4.2.0.16", "4.2.0.17"} {
		if d := f.digestOf(t, "wso2-staging/am:"+tag); d != "" {
			t.Errorf("blocked %s reached wso2-staging: %s", tag, d)
		}
	}
}

// TestProvenanceUnattestedBlockedUntilAttested: an image without an attestation is blocked (someone has to attest it,
// as with a missing signature); once attested with the configured key on an allowed base, the promoter's
// re-evaluation loop promotes it with no other event.
func TestProvenanceUnattestedBlockedUntilAttested(t *testing.T) {
	f := startFlow(t, map[string]string{"auto_scan": "true"}, func(h string) []config.Promotion {
		return []config.Promotion{devToStaging(h, "acme-am", "am", config.Gates{Provenance: fromWSO2})}
	})
	digest := f.push(t, "wso2-dev", "am:4.2.0.15", am15)
	b := waitMessage(t, f.b, event.SubjectImageBlocked, blockedOf(digest))
	if g := gate(b.GetGates(), "provenance"); g == nil || g.GetReason() != "no SLSA provenance attestation for "+short(digest) ||
		!strings.Contains(g.GetUnblock(), "rebuild it with harborflow") {
		t.Fatalf("unattested: %v", b.GetGates())
	}
	f.reevaluate(t)
	if d := f.digestOf(t, "wso2-staging/am:4.2.0.15"); d != "" {
		t.Fatalf("promoted without an attestation")
	}

	f.attest(t, f.signer, f.h+"/wso2-dev/am@"+digest, wso2Base)
	f.reevaluateUntil(t, "wso2-staging/am:4.2.0.15", digest)
	m := waitMessage(t, f.b, event.SubjectImagePromoted, promotedOf(digest, "wso2-staging"))
	if g := gate(m.GetGates(), "provenance"); g == nil || !g.GetPassed() {
		t.Errorf("promoted with gates %v", m.GetGates())
	}
	st := &harborflowv1.PromotionState{}
	if _, err := f.promotions.Get(f.ctx, event.Key("promotion", "acme-am", digest), st); err != nil {
		t.Fatal(err)
	}
	if e := st.GetReached()[len(st.GetReached())-1]; e.GetStage() != "wso2-staging" || gate(e.GetGates(), "provenance").GetPassed() != true {
		t.Errorf("the state records %v", st.GetReached())
	}
}

// short is a digest as the promoter's reasons print it: sha256: and 12 hex digits.
func short(digest string) string { return digest[:len("sha256:")+12] }
