package signature_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/imageref"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
)

// attTag is cosign's attestation tag of a digest.
func attTag(dig string) string { return strings.Replace(dig, ":", "-", 1) + ".att" }

// statementOf is a provenance statement about image (registry/repository@digest).
func statementOf(t *testing.T, image string) []byte {
	t.Helper()
	r, err := imageref.Parse(image)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st, err := provenance.Statement(provenance.Build{
		Image: r.Name(), Digest: r.Digest, Recipe: "am", Builder: "overlay", Tag: "4.2.0.16.1",
		Base: "registry.wso2.com/wso2am:4.2.0", BaseImage: "registry.wso2.com/wso2am@sha256:" + strings.Repeat("b", 64),
		EventID: "evt-1", Version: "test", Started: now, Finished: now.Add(time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// readAtt reads the attestation manifest of dig in repo.
func readAtt(t *testing.T, e env, repo, dig string) manifest {
	t.Helper()
	_, body := e.reg.ReadManifest(t, repo+":"+attTag(dig))
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decoding the attestation manifest: %v", err)
	}
	return m
}

func TestAttestThenVerify(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "acme/am:4.2.0.16.1", registrytest.Image{})
	s := newSigner(t)
	st := statementOf(t, img.Ref)

	got, err := s.Attest(e.ctx, e.client, img.Ref, st)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	if !got.Added || got.Ref != e.reg.Ref("acme/am:"+attTag(img.Digest)) {
		t.Errorf("Attest = %+v, want an attestation added under %s", got, attTag(img.Digest))
	}
	back, err := signature.VerifyAttestation(e.ctx, e.client, img.Ref, verifiers(t, s), provenance.PredicateType)
	if err != nil {
		t.Fatalf("VerifyAttestation: %v", err)
	}
	if !bytes.Equal(back, st) {
		t.Errorf("VerifyAttestation returned\n%s\nwant the statement attested\n%s", back, st)
	}

	// The manifest is what cosign attest writes: one DSSE layer, its predicate type annotated, the signature
	// annotation empty, the envelope holding the statement and one signature.
	m := readAtt(t, e, "acme/am", img.Digest)
	if len(m.Layers) != 1 {
		t.Fatalf("attestation manifest has %d layers, want 1", len(m.Layers))
	}
	l := m.Layers[0]
	if m.MediaType != registrytest.MediaOCIManifest || l.MediaType != signature.MediaTypeDSSE {
		t.Errorf("media types: manifest %s, layer %s", m.MediaType, l.MediaType)
	}
	sig, ok := l.Annotations[signature.AnnotationSignature]
	if !ok || sig != "" || l.Annotations[signature.AnnotationPredicateType] != provenance.PredicateType {
		t.Errorf("layer annotations = %v", l.Annotations)
	}
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			Sig string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(e.reg.ReadBlob(t, "acme/am", l.Digest), &env); err != nil {
		t.Fatalf("decoding the envelope: %v", err)
	}
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	if env.PayloadType != signature.PayloadTypeInToto || !bytes.Equal(payload, st) || len(env.Signatures) != 1 {
		t.Errorf("envelope: payload type %s, %d signatures, payload\n%s", env.PayloadType, len(env.Signatures), payload)
	}
}

// A redelivered build attests again: nothing is added. Another key's attestation is added beside.
func TestAttestTwiceWritesOnce(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "acme/am:4.2.0.16.1", registrytest.Image{})
	s := newSigner(t)
	st := statementOf(t, img.Ref)
	first, err := s.Attest(e.ctx, e.client, img.Ref, st)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Attest(e.ctx, e.client, img.Ref, st)
	if err != nil {
		t.Fatal(err)
	}
	if again.Added || again.Digest != first.Digest || len(readAtt(t, e, "acme/am", img.Digest).Layers) != 1 {
		t.Errorf("second Attest = %+v, want nothing added to %s", again, first.Digest)
	}
	other := newSigner(t)
	if _, err := other.Attest(e.ctx, e.client, img.Ref, st); err != nil {
		t.Fatal(err)
	}
	if n := len(readAtt(t, e, "acme/am", img.Digest).Layers); n != 2 {
		t.Errorf("after another key's Attest: %d layers, want 2", n)
	}
	for _, who := range []*signature.Signer{s, other} {
		if _, err := signature.VerifyAttestation(e.ctx, e.client, img.Ref, verifiers(t, who), provenance.PredicateType); err != nil {
			t.Errorf("VerifyAttestation with one of the two keys: %v", err)
		}
	}
}

func TestAttestRefusesAStatementAboutAnotherImage(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "acme/am:1", registrytest.Image{})
	other := e.reg.PushImage(t, "acme/am:2", registrytest.Image{Labels: map[string]string{"n": "2"}})
	s := newSigner(t)
	if _, err := s.Attest(e.ctx, e.client, img.Ref, statementOf(t, other.Ref)); err == nil || !strings.Contains(err.Error(), "subjects do not include") {
		t.Errorf("Attest of another image's statement = %v, want refused", err)
	}
	if _, err := s.Attest(e.ctx, e.client, img.Ref, []byte(`{"not":"a statement"}`)); err == nil {
		t.Error("Attest of a non-statement succeeded")
	}
}

func TestVerifyAttestationSaysWhy(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "acme/am:4.2.0.16.1", registrytest.Image{})
	s := newSigner(t)

	_, err := signature.VerifyAttestation(e.ctx, e.client, img.Ref, verifiers(t, s), provenance.PredicateType)
	if !errors.Is(err, signature.ErrNotSigned) {
		t.Errorf("not attested: %v, want ErrNotSigned", err)
	}
	if _, err := s.Attest(e.ctx, e.client, img.Ref, statementOf(t, img.Ref)); err != nil {
		t.Fatal(err)
	}
	_, err = signature.VerifyAttestation(e.ctx, e.client, img.Ref, verifiers(t, newSigner(t)), provenance.PredicateType)
	if !errors.Is(err, signature.ErrUntrustedKey) {
		t.Errorf("another key: %v, want ErrUntrustedKey", err)
	}
	_, err = signature.VerifyAttestation(e.ctx, e.client, img.Ref, verifiers(t, s), "https://spdx.dev/Document")
	if !errors.Is(err, signature.ErrNotSigned) || !strings.Contains(err.Error(), "no https://spdx.dev/Document attestation") {
		t.Errorf("another predicate type: %v, want ErrNotSigned naming the type", err)
	}

	// The statement altered (another event id), keeping the signature and the key's mark: tampered.
	_, attBody := e.reg.ReadManifest(t, "acme/am:"+attTag(img.Digest))
	var m map[string]any
	if err := json.Unmarshal(attBody, &m); err != nil {
		t.Fatal(err)
	}
	layer := m["layers"].([]any)[0].(map[string]any)
	var env map[string]any
	if err := json.Unmarshal(e.reg.ReadBlob(t, "acme/am", layer["digest"].(string)), &env); err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(statementOf(t, img.Ref)), `"eventId":"evt-1"`, `"eventId":"evt-2"`, 1)
	if !strings.Contains(forged, "evt-2") {
		t.Fatal("the statement was not altered")
	}
	env["payload"] = base64.StdEncoding.EncodeToString([]byte(forged))
	blob, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	layer["digest"], layer["size"] = digestOf(blob), len(blob)
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	e.reg.PushRaw(t, "acme/am:"+attTag(img.Digest), registrytest.MediaOCIManifest, body, blob)
	_, err = signature.VerifyAttestation(e.ctx, e.client, img.Ref, verifiers(t, s), provenance.PredicateType)
	if !errors.Is(err, signature.ErrTampered) {
		t.Errorf("altered statement: %v, want ErrTampered", err)
	}
}
