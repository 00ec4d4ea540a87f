package registry_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// TestDirectReadFallbacks: once regclient has read from a repository, inspections of it GET the manifest
// and the config directly with regclient's authorization; any answer but a verified 200 hands the read
// back to regclient, so a refused token, corrupted content or a missing digest end as they would without
// direct reads.
func TestDirectReadFallbacks(t *testing.T) {
	t.Parallel()
	var corrupt atomic.Pointer[string] // a path whose next GET answers a flipped byte
	tamper := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p := corrupt.Load(); p == nil || r.Method != http.MethodGet || r.URL.Path != *p || !corrupt.CompareAndSwap(p, nil) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := bytes.Clone(rec.Body.Bytes())
			if i := bytes.IndexByte(body, '1'); i >= 0 {
				body[i] = '2'
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
	reg := registrytest.New(t, registrytest.WithTokenAuth("robot$harborflow", "s3cret"), registrytest.WithMiddleware(tamper))
	first := reg.PushImage(t, "proj/app:1", amd64)
	second := reg.PushImage(t, "proj/app:2", arm64)
	third := reg.PushImage(t, "proj/app:3", registrytest.Image{Labels: map[string]string{"update_level": "16"}})
	c, counter := newClient(t, []registry.Host{reg.Settings()}, registry.WithCacheSize(0))
	ctx := ctxT(t)
	inspect := func(name, ref string, want registry.Counts) *registry.Artifact {
		t.Helper()
		counter.Reset()
		a, err := c.Inspect(ctx, ref)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := counter.Snapshot(); got != want {
			t.Errorf("%s: requests %+v, want %+v", name, got, want)
		}
		return a
	}

	inspect("first read: regclient, with the token dance", first.Ref, registry.Counts{ManifestGet: 2, Token: 1, BlobGet: 1})
	inspect("direct reads with regclient's token", second.Ref, registry.Counts{ManifestGet: 1, BlobGet: 1})

	reg.Fail(1, http.StatusUnauthorized, "")
	inspect("a refused direct read goes back to regclient", third.Ref, registry.Counts{ManifestGet: 2, BlobGet: 1})

	path := "/v2/proj/app/manifests/" + second.Digest
	corrupt.Store(&path)
	if a := inspect("content that fails its digest is read again by regclient", second.Ref,
		registry.Counts{ManifestGet: 2, BlobGet: 1}); a.Labels["arch"] != "arm64" || a.Digest != second.Digest {
		t.Errorf("after a corrupted direct read: %s with labels %v, want %s labelled arm64", a.Digest, a.Labels, second.Digest)
	}
	if corrupt.Load() != nil {
		t.Error("the corrupted answer was never asked for")
	}

	missing := reg.Ref("proj/app@sha256:" + strings.Repeat("0", 64))
	counter.Reset()
	if _, err := c.Inspect(ctx, missing); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("missing digest: %v, want ErrNotFound", err)
	}
}
