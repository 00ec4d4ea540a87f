package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regclient/regclient/types/errs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestClassify(t *testing.T) {
	t.Parallel()
	img := func(layer string) []descJSON { return []descJSON{{MediaType: layer}} }
	ociCfg := &descJSON{MediaType: mtOCIConfig}
	subject := &descJSON{MediaType: mtOCIManifest, Digest: "sha256:" + hexA}
	cases := []struct {
		name      string
		mediaType string
		m         manifestJSON
		tag       string
		kind      Kind
		acc       Accessory
		subject   string
	}{
		{"oci image", mtOCIManifest, manifestJSON{Config: ociCfg, Layers: img("application/vnd.oci.image.layer.v1.tar+gzip")}, "1.0", KindImage, "", ""},
		{"docker image", mtDockerManifest, manifestJSON{Config: &descJSON{MediaType: mtDockerConfig}}, "", KindImage, "", ""},
		{"docker schema 1", mtDocker1Signed, manifestJSON{SchemaVersion: 1}, "", KindImage, "", ""},
		{"oci index", mtOCIIndex, manifestJSON{Manifests: []descJSON{{MediaType: mtOCIManifest}}}, "", KindIndex, "", ""},
		{"docker list", mtDockerList, manifestJSON{}, "", KindIndex, "", ""},
		{"cosign tag on anything", mtOCIManifest, manifestJSON{Config: ociCfg}, "sha256-" + hexA + ".sig", KindAccessory, AccessorySignature, "sha256:" + hexA},
		{"cosign .att tag", mtOCIManifest, manifestJSON{Config: ociCfg}, "sha256-" + hexA + ".att", KindAccessory, AccessoryAttestation, "sha256:" + hexA},
		{"cosign .sbom tag", mtOCIManifest, manifestJSON{Config: ociCfg}, "sha256-" + hexA + ".sbom", KindAccessory, AccessorySBOM, "sha256:" + hexA},
		{"not quite a cosign tag", mtOCIManifest, manifestJSON{Config: ociCfg}, "sha256-abc.sig", KindImage, "", ""},
		{"simple signing layer", mtOCIManifest, manifestJSON{Config: ociCfg, Layers: img(mtCosignSimpleSign)}, "", KindAccessory, AccessorySignature, ""},
		{"dsse layer", mtOCIManifest, manifestJSON{Config: ociCfg, Layers: img(mtDSSE)}, "", KindAccessory, AccessoryAttestation, ""},
		{"in-toto layer (buildx)", mtOCIManifest, manifestJSON{Config: ociCfg, Layers: img(mtInToto)}, "", KindAccessory, AccessoryAttestation, ""},
		{"notation signature", mtOCIManifest, manifestJSON{ArtifactType: mtNotarySignature, Config: &descJSON{MediaType: "application/vnd.oci.empty.v1+json"}, Subject: subject}, "", KindAccessory, AccessorySignature, "sha256:" + hexA},
		{"sigstore bundle signature", mtOCIManifest, manifestJSON{ArtifactType: "application/vnd.dev.sigstore.bundle.v0.3+json", Subject: subject,
			Annotations: map[string]string{annotSigstorePred: sigstoreSignPred}}, "", KindAccessory, AccessorySignature, "sha256:" + hexA},
		{"sigstore bundle attestation", mtOCIManifest, manifestJSON{ArtifactType: "application/vnd.dev.sigstore.bundle.v0.3+json", Subject: subject,
			Annotations: map[string]string{annotSigstorePred: "https://slsa.dev/provenance/v1"}}, "", KindAccessory, AccessoryAttestation, "sha256:" + hexA},
		{"spdx artifactType", mtOCIManifest, manifestJSON{ArtifactType: "application/spdx+json", Subject: subject}, "", KindAccessory, AccessorySBOM, "sha256:" + hexA},
		{"cyclonedx layer", mtOCIManifest, manifestJSON{Config: &descJSON{MediaType: "application/vnd.oci.empty.v1+json"}, Layers: img("application/vnd.cyclonedx+json")}, "", KindAccessory, AccessorySBOM, ""},
		{"harbor sbom", mtOCIManifest, manifestJSON{ArtifactType: "application/vnd.goharbor.harbor.sbom.v1", Subject: subject}, "", KindAccessory, AccessorySBOM, "sha256:" + hexA},
		{"signature wins over sbom", mtOCIManifest, manifestJSON{Layers: []descJSON{{MediaType: "text/spdx"}, {MediaType: mtCosignSimpleSign}}}, "", KindAccessory, AccessorySignature, ""},
		{"other referrer", mtOCIManifest, manifestJSON{ArtifactType: "application/vnd.example+json", Subject: subject}, "", KindAccessory, AccessoryReferrer, "sha256:" + hexA},
		{"image with a subject", mtOCIManifest, manifestJSON{Config: ociCfg, Subject: subject}, "", KindAccessory, AccessoryReferrer, "sha256:" + hexA},
		{"index with a subject", mtOCIIndex, manifestJSON{Subject: subject}, "", KindAccessory, AccessoryReferrer, "sha256:" + hexA},
		{"index with an artifactType", mtOCIIndex, manifestJSON{ArtifactType: "application/vnd.example+json"}, "", KindAccessory, AccessoryArtifact, ""},
		{"helm chart", mtOCIManifest, manifestJSON{Config: &descJSON{MediaType: "application/vnd.cncf.helm.config.v1+json"}}, "", KindAccessory, AccessoryArtifact, ""},
		{"image config with a foreign artifactType", mtOCIManifest, manifestJSON{ArtifactType: "application/vnd.example+json", Config: ociCfg}, "", KindAccessory, AccessoryArtifact, ""},
		{"buildkit cache", mtOCIManifest, manifestJSON{Config: &descJSON{MediaType: "application/vnd.buildkit.cacheconfig.v0"}}, "", KindAccessory, AccessoryArtifact, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind, acc, subj := classify(tc.mediaType, &tc.m, tc.tag)
			if kind != tc.kind || acc != tc.acc || subj != tc.subject {
				t.Errorf("classify = %q, %q, %q; want %q, %q, %q", kind, acc, subj, tc.kind, tc.acc, tc.subject)
			}
		})
	}
}

func TestSkipChild(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    descJSON
		skip bool
	}{
		{descJSON{MediaType: mtOCIManifest, Platform: &platformJSON{OS: "linux", Architecture: "amd64"}}, false},
		{descJSON{MediaType: mtOCIManifest}, false},
		{descJSON{MediaType: mtOCIManifest, Platform: &platformJSON{OS: "unknown", Architecture: "unknown"}}, true},
		{descJSON{MediaType: mtOCIManifest, Annotations: map[string]string{annotDockerRefType: dockerAttestManifst}}, true},
		{descJSON{MediaType: mtOCIIndex}, true},
	} {
		if got := skipChild(tc.d); got != tc.skip {
			t.Errorf("skipChild(%+v) = %v, want %v", tc.d, got, tc.skip)
		}
	}
}

func TestCommonLabels(t *testing.T) {
	t.Parallel()
	got := commonLabels([]Platform{
		{Labels: map[string]string{"update_level": "15", "arch": "amd64", "only": "here"}},
		{Labels: map[string]string{"update_level": "15", "arch": "arm64"}},
	})
	if fmt.Sprint(got) != "map[update_level:15]" {
		t.Errorf("commonLabels = %v", got)
	}
	if commonLabels(nil) != nil {
		t.Errorf("commonLabels(nil) is not nil")
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"1", time.Second, true},
		{"3600", time.Hour, true},
		{"99999999999", 24 * time.Hour, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
	} {
		got, ok := ParseRetryAfter(tc.v, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err       error
		kind      error
		retryable bool
	}{
		{fmt.Errorf("get: %w", fmt.Errorf("%w [http 404]", errs.ErrNotFound)), ErrNotFound, false},
		{fmt.Errorf("get: %w", fmt.Errorf("%w [http 401]", errs.ErrHTTPUnauthorized)), ErrUnauthorized, false},
		{fmt.Errorf("get: request failed: %w: Bad Gateway [http 502]: ", errs.ErrHTTPStatus), ErrUnavailable, true},
		{fmt.Errorf("get: request failed: %w: Request Timeout [http 408]: ", errs.ErrHTTPStatus), ErrUnavailable, true},
		{fmt.Errorf("get: request failed: %w: Bad Request [http 400]: ", errs.ErrHTTPStatus), nil, false},
		// What distribution 2.8 answered a redelivered build after its first delivery was SIGKILLed mid-push.
		{fmt.Errorf("failed to put manifest r/acme/am@sha256:1: request failed: %w: Bad Request [http 400]: "+
			`{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},`+
			`{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:2"}]}`, errs.ErrHTTPStatus),
			ErrIncompleteWrite, true},
		{fmt.Errorf("failed to send blob put: request failed: %w [http 404]: "+
			`{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}`, errs.ErrNotFound),
			ErrIncompleteWrite, true},
		{fmt.Errorf("put: request failed: %w: Bad Request [http 400]: {\"errors\":[{\"code\": \"BLOB_UNKNOWN\"}]}", errs.ErrHTTPStatus),
			ErrIncompleteWrite, true},
		// A blob that is not there when read is not an interrupted write.
		{fmt.Errorf("get blob: request failed: %w [http 404]: "+`{"errors":[{"code":"BLOB_UNKNOWN"}]}`, errs.ErrNotFound),
			ErrNotFound, false},
		{fmt.Errorf("put: request failed: %w: Bad Request [http 400]: "+`{"errors":[{"code":"MANIFEST_INVALID"}]}`, errs.ErrHTTPStatus),
			nil, false},
		{errs.ErrRetryLimitExceeded, ErrUnavailable, true},
		{fmt.Errorf("head: %w", &RateLimitError{Host: "h", RetryAfter: time.Minute}), ErrRateLimited, true},
		{errs.ErrCanceled, context.Canceled, true},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), ErrUnavailable, true},
		{fmt.Errorf("x: %w", errs.ErrInvalidReference), ErrInvalidReference, false},
		{errors.New("something else"), nil, false},
	} {
		err := mapErr(tc.err)
		if err.Error() != tc.err.Error() {
			t.Errorf("mapErr changed the message %q to %q", tc.err, err)
		}
		if tc.kind != nil && !errors.Is(err, tc.kind) {
			t.Errorf("mapErr(%v) is not %v", tc.err, tc.kind)
		}
		if got := Retryable(err); got != tc.retryable {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.retryable)
		}
	}
	if Retryable(nil) {
		t.Errorf("Retryable(nil)")
	}
	if d, ok := RetryAfter(fmt.Errorf("x: %w", &RateLimitError{RetryAfter: time.Minute})); !ok || d != time.Minute {
		t.Errorf("RetryAfter = %s, %v", d, ok)
	}
}

func TestCounterKinds(t *testing.T) {
	t.Parallel()
	var c Counter
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	client := &http.Client{Transport: c.Wrap(nil)}
	for _, req := range []struct{ method, path string }{
		{"HEAD", "/v2/a/b/manifests/1.0"},
		{"GET", "/v2/a/b/manifests/sha256:" + hexA},
		{"GET", "/v2/manifests/manifests/x"}, // a repository named manifests
		{"PUT", "/v2/a/manifests/1"},
		{"HEAD", "/v2/a/blobs/sha256:" + hexA},
		{"GET", "/v2/a/blobs/sha256:" + hexA},
		{"POST", "/v2/a/blobs/uploads/"},
		{"GET", "/v2/a/b/tags/list?n=10"},
		{"GET", "/service/token?service=harbor-registry&scope=repository:a:pull"},
		{"GET", "/token"},
		{"GET", "/v2/"},
		{"GET", "/v2/a/referrers/sha256:" + hexA},
	} {
		r, _ := http.NewRequest(req.method, srv.URL+req.path, nil)
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	want := Counts{ManifestHead: 1, ManifestGet: 2, ManifestPut: 1, BlobHead: 1, BlobGet: 1, TagList: 1, Token: 2, Other: 3}
	if got := c.Snapshot(); got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	if want.Total() != 12 || want.Gets() != 3 {
		t.Errorf("Total %d, Gets %d", want.Total(), want.Gets())
	}
	c.Reset()
	if got := c.Snapshot(); got != (Counts{}) {
		t.Errorf("after Reset: %+v", got)
	}
}

func TestLRU(t *testing.T) {
	t.Parallel()
	c := newLRU[string, int](2)
	c.put("a", 1)
	c.put("b", 2)
	if _, ok := c.get("a"); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	c.put("c", 3) // evicts b
	if _, ok := c.get("b"); ok {
		t.Error("b survived")
	}
	if v, ok := c.get("a"); !ok || v != 1 {
		t.Error("a evicted")
	}
	c.put("a", 10)
	if v, _ := c.get("a"); v != 10 || c.len() != 2 {
		t.Errorf("a = %d, len %d", v, c.len())
	}
	var none *lru[string, int] = newLRU[string, int](0)
	none.put("a", 1)
	if _, ok := none.get("a"); ok || none.len() != 0 {
		t.Error("a cache of size 0 kept something")
	}
}

func TestSlogToZap(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	l := newSlog(zap.New(core)).With("host", "h").WithGroup("g")
	l.Warn("failed", "err", "boom")
	l.Info("chatter")
	l.Log(context.Background(), -8, "trace with headers")
	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("entries %v", entries)
	}
	if entries[0].Level != zapcore.WarnLevel || entries[0].ContextMap()["g.err"] != "boom" || entries[0].ContextMap()["host"] != "h" {
		t.Errorf("warn entry %+v", entries[0])
	}
	if entries[1].Level != zapcore.DebugLevel || !strings.Contains(entries[1].LoggerName, "regclient") {
		t.Errorf("info entry %+v", entries[1])
	}
}
