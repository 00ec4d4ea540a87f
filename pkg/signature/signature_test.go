package signature_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godigest "github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/signature"
)

// plainKey is a new ECDSA P-256 key in SEC 1 PEM ("EC PRIVATE KEY").
func plainKey(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// newSigner is a signer with a new key.
func newSigner(t *testing.T) *signature.Signer {
	t.Helper()
	s, err := signature.LoadSigner(plainKey(t), nil)
	if err != nil {
		t.Fatalf("LoadSigner: %v", err)
	}
	return s
}

func verifiers(t *testing.T, signers ...*signature.Signer) []*signature.Verifier {
	t.Helper()
	var pems [][]byte
	for _, s := range signers {
		pems = append(pems, s.Verifier().PublicKeyPEM())
	}
	vs, err := signature.LoadVerifiers(pems...)
	if err != nil {
		t.Fatalf("LoadVerifiers: %v", err)
	}
	return vs
}

type env struct {
	reg    *registrytest.Registry
	client *registry.Client
	ctx    context.Context
}

func newEnv(t *testing.T) env {
	t.Helper()
	reg := registrytest.New(t)
	c, err := registry.New([]registry.Host{reg.Settings()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return env{reg: reg, client: c, ctx: ctx}
}

// sigTag is cosign's signature tag of a digest.
func sigTag(dig string) string { return strings.Replace(dig, ":", "-", 1) + ".sig" }

type manifest struct {
	MediaType string `json:"mediaType"`
	Config    struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
}

// readSig reads the signature manifest of dig in repo.
func readSig(t *testing.T, e env, repo, dig string) manifest {
	t.Helper()
	_, body := e.reg.ReadManifest(t, repo+":"+sigTag(dig))
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decoding the signature manifest: %v", err)
	}
	return m
}

func TestSignThenVerify(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	s := newSigner(t)

	got, err := s.Sign(e.ctx, e.client, img.Ref)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !got.Added || got.Ref != e.reg.Ref("wso2/am:"+sigTag(img.Digest)) {
		t.Errorf("Sign = %+v, want a signature added under %s", got, sigTag(img.Digest))
	}
	if err := signature.Verify(e.ctx, e.client, img.Ref, verifiers(t, s)); err != nil {
		t.Errorf("Verify: %v", err)
	}

	m := readSig(t, e, "wso2/am", img.Digest)
	if len(m.Layers) != 1 {
		t.Fatalf("signature manifest has %d layers, want 1", len(m.Layers))
	}
	l := m.Layers[0]
	if m.MediaType != registrytest.MediaOCIManifest || m.Config.MediaType != registrytest.MediaOCIConfig || l.MediaType != signature.MediaTypePayload {
		t.Errorf("media types: manifest %s, config %s, layer %s", m.MediaType, m.Config.MediaType, l.MediaType)
	}
	if l.Annotations[signature.AnnotationSignature] == "" || l.Annotations[signature.AnnotationKey] != s.Verifier().KeyID() {
		t.Errorf("layer annotations = %v", l.Annotations)
	}
	var p struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}
	if err := json.Unmarshal(e.reg.ReadBlob(t, "wso2/am", l.Digest), &p); err != nil {
		t.Fatalf("decoding the payload: %v", err)
	}
	if p.Critical.Image.DockerManifestDigest != img.Digest || p.Critical.Identity.DockerReference != e.reg.Ref("wso2/am") ||
		p.Critical.Type != "cosign container image signature" {
		t.Errorf("payload = %+v, want digest %s of %s", p.Critical, img.Digest, e.reg.Ref("wso2/am"))
	}
}

func TestSignTwiceWritesOnce(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	s := newSigner(t)
	first, err := s.Sign(e.ctx, e.client, img.Ref)
	if err != nil {
		t.Fatalf("first Sign: %v", err)
	}
	second, err := s.Sign(e.ctx, e.client, img.Ref)
	if err != nil {
		t.Fatalf("second Sign: %v", err)
	}
	if second.Added || second.Digest != first.Digest {
		t.Errorf("second Sign = %+v, want nothing added and manifest %s", second, first.Digest)
	}
	if m := readSig(t, e, "wso2/am", img.Digest); len(m.Layers) != 1 {
		t.Errorf("after two Signs the signature manifest has %d layers, want 1", len(m.Layers))
	}
}

func TestSignAddsToOtherSignatures(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	old, current := newSigner(t), newSigner(t)
	for _, s := range []*signature.Signer{old, current} {
		if _, err := s.Sign(e.ctx, e.client, img.Ref); err != nil {
			t.Fatalf("Sign: %v", err)
		}
	}
	m := readSig(t, e, "wso2/am", img.Digest)
	if len(m.Layers) != 2 {
		t.Fatalf("signature manifest has %d layers, want one per key", len(m.Layers))
	}
	// Key rotation: either key alone verifies, and both together.
	for name, vs := range map[string][]*signature.Verifier{
		"old": verifiers(t, old), "current": verifiers(t, current), "both": verifiers(t, old, current),
	} {
		if err := signature.Verify(e.ctx, e.client, img.Ref, vs); err != nil {
			t.Errorf("Verify with %s key: %v", name, err)
		}
	}
}

func TestVerifyWrongKey(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	if _, err := newSigner(t).Sign(e.ctx, e.client, img.Ref); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	err := signature.Verify(e.ctx, e.client, img.Ref, verifiers(t, newSigner(t), newSigner(t)))
	if !errors.Is(err, signature.ErrUntrustedKey) {
		t.Errorf("Verify with other keys = %v, want ErrUntrustedKey", err)
	}
}

func TestVerifyNotSigned(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	err := signature.Verify(e.ctx, e.client, img.Ref, verifiers(t, newSigner(t)))
	if !errors.Is(err, signature.ErrNotSigned) {
		t.Errorf("Verify of an unsigned image = %v, want ErrNotSigned", err)
	}
	// A .sig tag of something else than simple-signing layers is no signature either.
	e.reg.PushRaw(t, "wso2/am:"+sigTag(img.Digest), registrytest.MediaOCIManifest,
		[]byte(`{"schemaVersion":2,"mediaType":"`+registrytest.MediaOCIManifest+`","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`),
		[]byte("{}"))
	if err := signature.Verify(e.ctx, e.client, img.Ref, verifiers(t, newSigner(t))); !errors.Is(err, signature.ErrNotSigned) {
		t.Errorf("Verify with an empty .sig manifest = %v, want ErrNotSigned", err)
	}
}

func TestVerifyMalformedSignature(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	// registrytest's signature is shaped right, but its signature annotation is not even base64.
	e.reg.PushSignature(t, "wso2/am", img)
	err := signature.Verify(e.ctx, e.client, img.Ref, verifiers(t, newSigner(t)))
	if !errors.Is(err, signature.ErrTampered) || !strings.Contains(err.Error(), "not base64") {
		t.Errorf("Verify = %v, want ErrTampered: not base64", err)
	}
}

func TestVerifyTampered(t *testing.T) {
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	other := e.reg.PushImage(t, "wso2/am:4.2.0-other", registrytest.Image{Layer: "other"})
	s := newSigner(t)
	vs := verifiers(t, s)
	if _, err := s.Sign(e.ctx, e.client, other.Ref); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	_, otherSig := e.reg.ReadManifest(t, "wso2/am:"+sigTag(other.Digest))

	t.Run("signature of another digest", func(t *testing.T) {
		// other's signature, valid in itself, put under img's tag.
		e.reg.PushRaw(t, "wso2/am:"+sigTag(img.Digest), registrytest.MediaOCIManifest, otherSig)
		err := signature.Verify(e.ctx, e.client, img.Ref, vs)
		if !errors.Is(err, signature.ErrTampered) || !strings.Contains(err.Error(), other.Digest) {
			t.Errorf("Verify = %v, want ErrTampered naming %s", err, other.Digest)
		}
	})
	t.Run("payload altered", func(t *testing.T) {
		// other's signature with its payload edited to name img: the signature no longer matches.
		var m map[string]any
		if err := json.Unmarshal(otherSig, &m); err != nil {
			t.Fatal(err)
		}
		layer := m["layers"].([]any)[0].(map[string]any)
		p := e.reg.ReadBlob(t, "wso2/am", layer["digest"].(string))
		p = []byte(strings.Replace(string(p), other.Digest, img.Digest, 1))
		layer["digest"], layer["size"] = digestOf(p), len(p)
		body, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		e.reg.PushRaw(t, "wso2/am:"+sigTag(img.Digest), registrytest.MediaOCIManifest, body, p)
		err = signature.Verify(e.ctx, e.client, img.Ref, vs)
		if !errors.Is(err, signature.ErrTampered) {
			t.Errorf("Verify = %v, want ErrTampered", err)
		}
	})
}

func TestSignIndex(t *testing.T) {
	e := newEnv(t)
	idx := e.reg.PushIndex(t, "wso2/am:4.2.0", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64"}, {Platform: "linux/arm64"},
	}})
	s := newSigner(t)
	if _, err := s.Sign(e.ctx, e.client, idx.Ref); err != nil {
		t.Fatalf("Sign of the index: %v", err)
	}
	vs := verifiers(t, s)
	if err := signature.Verify(e.ctx, e.client, idx.Ref, vs); err != nil {
		t.Errorf("Verify of the index: %v", err)
	}
	// The index's signature is not its platforms'.
	for _, c := range idx.Children {
		if err := signature.Verify(e.ctx, e.client, c.Ref, vs); !errors.Is(err, signature.ErrNotSigned) {
			t.Errorf("Verify of platform %s = %v, want ErrNotSigned", c.Digest, err)
		}
	}
}

func TestLoadSignerEncrypted(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	// As cosign generate-key-pair writes it: PKCS #8, encrypted with go-securesystemslib (with its legacy,
	// cheaper scrypt parameters, which cosign also reads, to keep the test fast under -race).
	enc, err := encrypted.EncryptWithCustomKDFParameters(der, []byte("s3cret"), encrypted.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"} {
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: enc})
		s, err := signature.LoadSigner(keyPEM, []byte("s3cret"))
		if err != nil {
			t.Errorf("LoadSigner(%s): %v", typ, err)
			continue
		}
		want, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Verifier().PublicKeyPEM(); string(got) != string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: want})) {
			t.Errorf("LoadSigner(%s): public key %s is not the key's", typ, got)
		}
		if _, err := signature.LoadSigner(keyPEM, []byte("wrong")); !errors.Is(err, signature.ErrKey) {
			t.Errorf("LoadSigner(%s) with a wrong password = %v, want ErrKey", typ, err)
		}
	}
}

// TestLoadSignerCosignKey loads testdata/cosign.key, written by `cosign generate-key-pair` (v2.6.5) with the
// password "harborflow-test", and signs with it what testdata/cosign.pub verifies.
func TestLoadSignerCosignKey(t *testing.T) {
	keyPEM, err := os.ReadFile(filepath.Join("testdata", "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(filepath.Join("testdata", "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(keyPEM, []byte("harborflow-test"))
	if err != nil {
		t.Fatalf("LoadSigner(cosign.key): %v", err)
	}
	vs, err := signature.LoadVerifiers(pubPEM)
	if err != nil {
		t.Fatalf("LoadVerifiers(cosign.pub): %v", err)
	}
	e := newEnv(t)
	img := e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	if _, err := s.Sign(e.ctx, e.client, img.Ref); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := signature.Verify(e.ctx, e.client, img.Ref, vs); err != nil {
		t.Errorf("Verify with cosign.pub: %v", err)
	}
}

func TestLoadKeysRefused(t *testing.T) {
	pub := newSigner(t).Verifier().PublicKeyPEM()
	for name, keyPEM := range map[string][]byte{
		"not PEM":    []byte("not a key"),
		"public key": pub,
	} {
		if _, err := signature.LoadSigner(keyPEM, nil); !errors.Is(err, signature.ErrKey) {
			t.Errorf("LoadSigner(%s) = %v, want ErrKey", name, err)
		}
	}
	for name, pems := range map[string][][]byte{
		"none":        nil,
		"private key": {plainKey(t)},
		"not PEM":     {append(append([]byte{}, pub...), "trailing"...)},
	} {
		if _, err := signature.LoadVerifiers(pems...); !errors.Is(err, signature.ErrKey) {
			t.Errorf("LoadVerifiers(%s) = %v, want ErrKey", name, err)
		}
	}
	// One file may hold several keys.
	two := append(append([]byte{}, pub...), newSigner(t).Verifier().PublicKeyPEM()...)
	if vs, err := signature.LoadVerifiers(two); err != nil || len(vs) != 2 {
		t.Errorf("LoadVerifiers(two keys in one file) = %d keys, %v; want 2", len(vs), err)
	}
}

func digestOf(b []byte) string { return godigest.FromBytes(b).String() }

func TestSignAndVerifyNeedADigest(t *testing.T) {
	e := newEnv(t)
	e.reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	s := newSigner(t)
	ref := e.reg.Ref("wso2/am:4.2.0")
	if _, err := s.Sign(e.ctx, e.client, ref); !errors.Is(err, registry.ErrInvalidReference) {
		t.Errorf("Sign(%s) = %v, want ErrInvalidReference", ref, err)
	}
	if err := signature.Verify(e.ctx, e.client, ref, verifiers(t, s)); !errors.Is(err, registry.ErrInvalidReference) {
		t.Errorf("Verify(%s) = %v, want ErrInvalidReference", ref, err)
	}
	if tags, err := e.client.Tags(e.ctx, e.reg.Ref("wso2/am")); err != nil || len(tags) != 1 {
		t.Errorf("tags after refused Signs = %v, %v; want only 4.2.0", tags, err)
	}
}
