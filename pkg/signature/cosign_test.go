package signature_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/buildah/buildahtest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
)

// cosignTool is the cosign of make test (.tmp/bin, or PATH). Without it the test is skipped, or fails when
// HARBORFLOW_REQUIRE_RUNTIMES=1.
func cosignTool(t *testing.T) string {
	t.Helper()
	return buildahtest.Tool(t, "cosign")
}

// cosign runs the cosign at path with args, env and a HOME of the test's own.
func cosign(t *testing.T, path string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), append([]string{"HOME=" + t.TempDir()}, env...)...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

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

// TestCosignVerifiesOurSignatures signs an image and a two-platform index with Sign and has `cosign verify
// --key` check them: accepted with the signer's key, refused with another.
func TestCosignVerifiesOurSignatures(t *testing.T) {
	tool := cosignTool(t)
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	idx := e.reg.PushIndex(t, "wso2/is:7.0.0", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64"}, {Platform: "linux/arm64"},
	}})
	s := newSigner(t)
	pub := writeFile(t, "pub.pem", s.Verifier().PublicKeyPEM())
	otherPub := writeFile(t, "other.pem", newSigner(t).Verifier().PublicKeyPEM())

	for _, ref := range []string{img.Ref, idx.Ref} {
		if _, err := s.Sign(e.ctx, e.client, ref); err != nil {
			t.Fatalf("Sign(%s): %v", ref, err)
		}
		out, err := cosign(t, tool, nil, append(append([]string{"verify", "--key", pub}, offline...), ref)...)
		if err != nil {
			t.Errorf("cosign verify --key <signer's key> %s: %v\n%s", ref, err, out)
		} else {
			t.Logf("cosign verify %s:\n%s", ref, out)
		}
		if !strings.Contains(out, `"docker-manifest-digest":"`+ref[strings.LastIndex(ref, "@")+1:]+`"`) {
			t.Errorf("cosign verify printed no payload for %s:\n%s", ref, out)
		}
		out, err = cosign(t, tool, nil, append(append([]string{"verify", "--key", otherPub}, offline...), ref)...)
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
	tool := cosignTool(t)
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	key := filepath.Join("testdata", "cosign.key")
	out, err := cosign(t, tool, []string{"COSIGN_PASSWORD=harborflow-test"}, "sign", "--key", key, "--tlog-upload=false",
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
