package signature_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/provenance"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
)

// offline are the flags cosign needs for a key-based signature in a plain-HTTP registry without Rekor.
var offline = []string{"--offline=true", "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry"}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cosignSetup pushes an image and a two-platform index (their references), and makes a signer, with its
// public key and another key written to files for cosign --key.
func cosignSetup(t *testing.T) (e env, refs []string, s *signature.Signer, pub, otherPub string) {
	t.Helper()
	e = newEnv(t)
	img := e.reg.PushImage(t, "acme/am:4.2.0.16.1", registrytest.Image{})
	idx := e.reg.PushIndex(t, "acme/is:7.0.0.3.1", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64"}, {Platform: "linux/arm64"},
	}})
	s = newSigner(t)
	pub = writeFile(t, "pub.pem", s.Verifier().PublicKeyPEM())
	otherPub = writeFile(t, "other.pem", newSigner(t).Verifier().PublicKeyPEM())
	return e, []string{img.Ref, idx.Ref}, s, pub, otherPub
}

// TestCosignVerifiesOurSignatures signs an image and a two-platform index with Sign and has `cosign verify
// --key` check them: accepted with the signer's key, refused with another.
func TestCosignVerifiesOurSignatures(t *testing.T) {
	e, refs, s, pub, otherPub := cosignSetup(t)
	for _, ref := range refs {
		if _, err := s.Sign(e.ctx, e.client, ref); err != nil {
			t.Fatalf("Sign(%s): %v", ref, err)
		}
		out, err := buildahtest.Cosign(t, nil, append(append([]string{"verify", "--key", pub}, offline...), ref)...)
		if err != nil {
			t.Errorf("cosign verify --key <signer's key> %s: %v\n%s", ref, err, out)
		} else {
			t.Logf("cosign verify %s:\n%s", ref, out)
		}
		if !strings.Contains(out, `"docker-manifest-digest":"`+ref[strings.LastIndex(ref, "@")+1:]+`"`) {
			t.Errorf("cosign verify printed no payload for %s:\n%s", ref, out)
		}
		out, err = buildahtest.Cosign(t, nil, append(append([]string{"verify", "--key", otherPub}, offline...), ref)...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 || !strings.Contains(out, "no matching signatures") {
			t.Errorf("cosign verify --key <another key> %s = %v, want a non-zero exit for no matching signatures\n%s", ref, err, out)
		} else {
			t.Logf("cosign verify with another key: %v:\n%s", err, out)
		}
	}
}

// TestVerifyCosignSignatures has `cosign sign --key cosign.key` sign an image (testdata/cosign.key, written by
// cosign generate-key-pair): Verify accepts the signature, and Sign with the same key adds nothing to it.
func TestVerifyCosignSignatures(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	key := filepath.Join("testdata", "cosign.key")
	out, err := buildahtest.Cosign(t, []string{"COSIGN_PASSWORD=harborflow-test"}, "sign", "--key", key, "--tlog-upload=false",
		"--allow-insecure-registry", "--allow-http-registry", "--yes", img.Ref)
	if err != nil {
		t.Fatalf("cosign sign: %v\n%s", err, out)
	}
	pubPEM, err := os.ReadFile(filepath.Join("testdata", "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := signature.LoadVerifiers(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := signature.Verify(e.ctx, e.client, img.Ref, vs); err != nil {
		t.Errorf("Verify of cosign's signature: %v", err)
	}
	if err := signature.Verify(e.ctx, e.client, img.Ref, verifiers(t, newSigner(t))); !errors.Is(err, signature.ErrUntrustedKey) {
		t.Errorf("Verify of cosign's signature with another key = %v, want ErrUntrustedKey", err)
	}

	keyPEM, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(keyPEM, []byte("harborflow-test"))
	if err != nil {
		t.Fatal(err)
	}
	before := readSig(t, e, "wso2/am", img.Digest)
	got, err := s.Sign(e.ctx, e.client, img.Ref)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got.Added || len(readSig(t, e, "wso2/am", img.Digest).Layers) != len(before.Layers) {
		t.Errorf("Sign over cosign's signature by the same key = %+v, want nothing added", got)
	}
}

// TestCosignVerifiesOurAttestations attests an image and a two-platform index with Attest and has `cosign
// verify-attestation --key --type slsaprovenance1` check them: accepted with the signer's key, refused with
// another key and for another predicate type.
func TestCosignVerifiesOurAttestations(t *testing.T) {
	e, refs, s, pub, otherPub := cosignSetup(t)
	for _, ref := range refs {
		if _, err := s.Attest(e.ctx, e.client, ref, statementOf(t, ref)); err != nil {
			t.Fatalf("Attest(%s): %v", ref, err)
		}
		args := append([]string{"verify-attestation", "--key", pub, "--type", "slsaprovenance1"}, offline...)
		out, err := buildahtest.Cosign(t, nil, append(args, ref)...)
		if err != nil {
			t.Errorf("cosign verify-attestation --key <signer's key> %s: %v\n%s", ref, err, out)
		}
		// It prints the envelope; its payload is the statement, about the digest.
		if !strings.Contains(out, `"payloadType":"application/vnd.in-toto+json"`) {
			t.Errorf("cosign verify-attestation printed no envelope for %s:\n%s", ref, out)
		}
		out, err = buildahtest.Cosign(t, nil, append(append([]string{"verify-attestation", "--key", otherPub, "--type", "slsaprovenance1"}, offline...), ref)...)
		if err == nil {
			t.Errorf("cosign verify-attestation --key <another key> %s succeeded:\n%s", ref, out)
		}
		out, err = buildahtest.Cosign(t, nil, append(append([]string{"verify-attestation", "--key", pub, "--type", "spdxjson"}, offline...), ref)...)
		if err == nil {
			t.Errorf("cosign verify-attestation --type spdxjson %s succeeded:\n%s", ref, out)
		}
	}
}

// TestVerifyCosignAttestations has `cosign attest --key cosign.key --type slsaprovenance1` attest an image with
// our statement's predicate: VerifyAttestation accepts it, and Attest with the same key adds nothing.
func TestVerifyCosignAttestations(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "acme/am:4.2.0.16.1", registrytest.Image{})
	var st struct {
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(statementOf(t, img.Ref), &st); err != nil {
		t.Fatal(err)
	}
	predicate := writeFile(t, "predicate.json", st.Predicate)
	out, err := buildahtest.Cosign(t, []string{"COSIGN_PASSWORD=harborflow-test"}, "attest", "--key", filepath.Join("testdata", "cosign.key"),
		"--type", "slsaprovenance1", "--predicate", predicate, "--tlog-upload=false", "--allow-insecure-registry",
		"--allow-http-registry", "--yes", img.Ref)
	if err != nil {
		t.Fatalf("cosign attest: %v\n%s", err, out)
	}
	pubPEM, err := os.ReadFile(filepath.Join("testdata", "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := signature.LoadVerifiers(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	back, err := signature.VerifyAttestation(e.ctx, e.client, img.Ref, vs, provenance.PredicateType)
	if err != nil {
		t.Fatalf("VerifyAttestation of cosign's attestation: %v", err)
	}
	b, err := provenance.Parse(back)
	if err != nil || b.Recipe != "am" || b.Digest != img.Digest {
		t.Errorf("cosign's statement parsed as %+v, %v", b, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join("testdata", "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(keyPEM, []byte("harborflow-test"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Attest(e.ctx, e.client, img.Ref, statementOf(t, img.Ref))
	if err != nil || got.Added {
		t.Errorf("Attest over cosign's attestation by the same key = %+v, %v; want nothing added", got, err)
	}
}
