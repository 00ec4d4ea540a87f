package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// newClient returns a client for regs that counts its requests.
func newClient(t testing.TB, regs []registry.Host, opts ...registry.Opt) (*registry.Client, *registry.Counter) {
	t.Helper()
	var counter registry.Counter
	c, err := registry.New(regs, append([]registry.Opt{registry.WithTransport(counter.Wrap)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c, &counter
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	amd64 = registrytest.Image{Platform: "linux/amd64", Labels: map[string]string{"update_level": "15", "arch": "amd64"},
		User: "802", ExposedPorts: []string{"9443/tcp", "8243/tcp"}}
	arm64 = registrytest.Image{Platform: "linux/arm64/v8", Labels: map[string]string{"update_level": "15", "arch": "arm64"},
		User: "802"}
)

func TestInspectClassifies(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	img := reg.PushImage(t, "wso2-apim/am:4.2.0.15", amd64)
	docker := reg.PushImage(t, "wso2-apim/am:docker", registrytest.Image{Labels: map[string]string{"update_level": "3"}, Docker: true})
	empty := reg.PushImage(t, "wso2-apim/am:4.2.0.0", registrytest.Image{Labels: map[string]string{"update_level": ""}})
	idx := reg.PushIndex(t, "wso2-apim/am:4.2.0.16", registrytest.Index{Images: []registrytest.Image{amd64, arm64}, Attestations: true,
		Annotations: map[string]string{"org.opencontainers.image.version": "4.2.0.16"}})
	list := reg.PushIndex(t, "wso2-apim/am:list", registrytest.Index{Images: []registrytest.Image{amd64, arm64}, Docker: true})
	sig := reg.PushSignature(t, "wso2-apim/am", img)
	att := reg.PushAttestation(t, "wso2-apim/am", img)
	sbom := reg.PushSBOM(t, "wso2-apim/am", img)
	other := reg.PushReferrer(t, "wso2-apim/am", "application/vnd.example.scan-report+json", img)
	reg.PushHelmChart(t, "charts/am:1.0.0")
	buildxAtt := idx.Children[2] // the first attestation manifest of the index

	c, _ := newClient(t, []registry.Host{reg.Settings()})
	cases := []struct {
		name      string
		ref       string
		kind      registry.Kind
		accessory registry.Accessory
		subject   string
		platforms []string
		labels    map[string]string
	}{
		{"image by tag", reg.Ref("wso2-apim/am:4.2.0.15"), registry.KindImage, "", "", []string{"linux/amd64"}, amd64.Labels},
		{"image by digest", img.Ref, registry.KindImage, "", "", []string{"linux/amd64"}, amd64.Labels},
		{"docker image", docker.Ref, registry.KindImage, "", "", []string{"linux/amd64"}, map[string]string{"update_level": "3"}},
		{"empty update_level", empty.Ref, registry.KindImage, "", "", []string{"linux/amd64"}, map[string]string{"update_level": ""}},
		{"index", reg.Ref("wso2-apim/am:4.2.0.16"), registry.KindIndex, "", "", []string{"linux/amd64", "linux/arm64/v8"},
			map[string]string{"update_level": "15"}},
		{"docker manifest list", list.Ref, registry.KindIndex, "", "", []string{"linux/amd64", "linux/arm64/v8"},
			map[string]string{"update_level": "15"}},
		{"cosign signature by tag", reg.Ref("wso2-apim/am:" + sig.Tag), registry.KindAccessory, registry.AccessorySignature, img.Digest, nil, nil},
		{"cosign signature by digest", sig.Ref, registry.KindAccessory, registry.AccessorySignature, "", nil, nil},
		{"cosign attestation by tag", reg.Ref("wso2-apim/am:" + att.Tag), registry.KindAccessory, registry.AccessoryAttestation, img.Digest, nil, nil},
		{"cosign attestation by digest", att.Ref, registry.KindAccessory, registry.AccessoryAttestation, "", nil, nil},
		{"sbom referrer", sbom.Ref, registry.KindAccessory, registry.AccessorySBOM, img.Digest, nil, nil},
		{"other referrer", other.Ref, registry.KindAccessory, registry.AccessoryReferrer, img.Digest, nil, nil},
		{"buildx attestation manifest", buildxAtt.Ref, registry.KindAccessory, registry.AccessoryAttestation, "", nil, nil},
		{"helm chart", reg.Ref("charts/am:1.0.0"), registry.KindAccessory, registry.AccessoryArtifact, "", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := c.Inspect(ctxT(t), tc.ref)
			if err != nil {
				t.Fatalf("Inspect(%s): %v", tc.ref, err)
			}
			if a.Kind != tc.kind || a.Accessory != tc.accessory || a.Subject != tc.subject {
				t.Errorf("kind, accessory, subject = %q, %q, %q; want %q, %q, %q", a.Kind, a.Accessory, a.Subject, tc.kind, tc.accessory, tc.subject)
			}
			var plats []string
			for _, p := range a.Platforms {
				plats = append(plats, p.String())
			}
			if !slices.Equal(plats, tc.platforms) {
				t.Errorf("platforms = %v, want %v", plats, tc.platforms)
			}
			if fmt.Sprint(a.Labels) != fmt.Sprint(tc.labels) {
				t.Errorf("labels = %v, want %v", a.Labels, tc.labels)
			}
			if a.Registry != reg.Host || !strings.HasPrefix(a.Digest, "sha256:") || a.MediaType == "" {
				t.Errorf("artifact = %+v", a)
			}
		})
	}

	t.Run("image details", func(t *testing.T) {
		a, err := c.Inspect(ctxT(t), img.Ref)
		if err != nil {
			t.Fatal(err)
		}
		p := a.Platforms[0]
		if a.Digest != img.Digest || p.Digest != img.Digest || a.Repository != "wso2-apim/am" || a.MediaType != registrytest.MediaOCIManifest {
			t.Errorf("artifact = %+v", a)
		}
		if p.User != "802" || !slices.Equal(p.ExposedPorts, []string{"8243/tcp", "9443/tcp"}) || p.Created.IsZero() {
			t.Errorf("platform = %+v", p)
		}
	})
	t.Run("index details", func(t *testing.T) {
		a, err := c.Inspect(ctxT(t), idx.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if a.Annotations["org.opencontainers.image.version"] != "4.2.0.16" {
			t.Errorf("annotations = %v", a.Annotations)
		}
		for i, p := range a.Platforms {
			if p.Digest != idx.Children[i].Digest {
				t.Errorf("platform %d digest = %s, want %s", i, p.Digest, idx.Children[i].Digest)
			}
		}
		if a.Platforms[1].Labels["arch"] != "arm64" || a.Platforms[1].Variant != "v8" {
			t.Errorf("arm64 platform = %+v", a.Platforms[1])
		}
	})
}

func TestRequestBudget(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	img := reg.PushImage(t, "proj/app:1.0", amd64)
	reg.PushImage(t, "proj/app:1.0-again", amd64) // the same digest under a second tag
	byTag := reg.PushImage(t, "proj/other:2.0", arm64)
	// The index's images differ from the single images above, whose configs the client will have cached.
	multi := []registrytest.Image{
		{Platform: "linux/amd64", Labels: map[string]string{"update_level": "16"}},
		{Platform: "linux/arm64", Labels: map[string]string{"update_level": "16"}},
	}
	idx := reg.PushIndex(t, "proj/multi:3.0", registrytest.Index{Images: multi, Attestations: true})
	s390x := registrytest.Image{Platform: "linux/s390x", Labels: map[string]string{"update_level": "16"}}
	grown := reg.PushIndex(t, "proj/multi:3.1", registrytest.Index{Images: append(slices.Clone(multi), s390x)})

	c, counter := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)
	step := func(name string, want registry.Counts, f func() error) {
		t.Helper()
		counter.Reset()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := counter.Snapshot(); got != want {
			t.Errorf("%s: requests %+v, want %+v", name, got, want)
		}
	}
	inspect := func(ref string) func() error {
		return func() error { _, err := c.Inspect(ctx, ref); return err }
	}
	resolveInspect := func(tagRef string) func() error {
		return func() error {
			d, err := c.Resolve(ctx, tagRef)
			if err != nil {
				return err
			}
			_, err = c.Inspect(ctx, tagRef+"@"+d.Digest)
			return err
		}
	}

	step("image whose digest the event names", registry.Counts{ManifestGet: 1, BlobGet: 1}, inspect(img.Ref))
	step("the same digest again", registry.Counts{}, inspect(img.Ref))
	step("known digest with a new tag", registry.Counts{ManifestHead: 1}, resolveInspect(reg.Ref("proj/app:1.0-again")))
	step("image by tag only, HEAD first", registry.Counts{ManifestHead: 1, ManifestGet: 1, BlobGet: 1}, resolveInspect(reg.Ref("proj/other:2.0")))
	c2, counter2 := newClient(t, []registry.Host{reg.Settings()})
	counter2.Reset()
	if _, err := c2.Inspect(ctx, reg.Ref("proj/other:2.0")); err != nil {
		t.Fatal(err)
	}
	if got := counter2.Snapshot(); got != (registry.Counts{ManifestGet: 1, BlobGet: 1}) {
		t.Errorf("image by tag only, GET by tag: requests %+v", got)
	}
	_ = byTag

	step("index with 2 platforms (and 2 attestations)", registry.Counts{ManifestGet: 3, BlobGet: 2}, inspect(idx.Ref))
	step("the same index again", registry.Counts{}, inspect(idx.Ref))
	// The grown index has the same amd64 and arm64 images: only the index and the new platform are read.
	step("index that gained a platform", registry.Counts{ManifestGet: 2, BlobGet: 1}, inspect(grown.Ref))

	// What the watcher does: a HEAD gives the index digest; one GET gives the per-platform digests.
	step("HEAD of an index tag", registry.Counts{ManifestHead: 1}, func() error {
		d, err := c.Resolve(ctx, reg.Ref("proj/multi:3.0"))
		if err == nil && (d.Digest != idx.Digest || d.MediaType != registrytest.MediaOCIIndex || d.Size != idx.Size) {
			err = fmt.Errorf("resolved %+v, want %s", d, idx.Digest)
		}
		return err
	})
	c3, counter3 := newClient(t, []registry.Host{reg.Settings()})
	a, err := c3.Manifest(ctx, grown.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := counter3.Snapshot(); got != (registry.Counts{ManifestGet: 1}) {
		t.Errorf("Manifest of an index: requests %+v", got)
	}
	if len(a.Platforms) != 3 || a.Platforms[2].String() != "linux/s390x" || a.Platforms[2].Digest != grown.Children[2].Digest || a.Platforms[0].Labels != nil {
		t.Errorf("Manifest of an index: platforms %+v", a.Platforms)
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.WithTagPageSize(2))
	want := []string{"4.2.0", "4.2.0.1", "4.2.0.2", "4.2.0.3", "latest"}
	for _, tag := range want {
		reg.PushImage(t, "wso2/am:"+tag, amd64)
	}
	c, counter := newClient(t, []registry.Host{reg.Settings()})
	got, err := c.Tags(ctxT(t), reg.Ref("wso2/am"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("tags = %v, want %v", got, want)
	}
	if n := counter.Snapshot(); n != (registry.Counts{TagList: 3}) {
		t.Errorf("requests %+v, want 3 pages", n)
	}
	// distribution answers 404 NAME_UNKNOWN for a repository that does not exist; olareg an empty list.
	if tags, err := c.Tags(ctxT(t), reg.Ref("wso2/missing")); len(tags) > 0 || (err != nil && !errors.Is(err, registry.ErrNotFound)) {
		t.Errorf("tags of a missing repository: %v, %v; want none or ErrNotFound", tags, err)
	}
}

// TestWatcherCycle is the watcher's steady state: one tag list and a HEAD per tracked tag, no GETs.
func TestWatcherCycle(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	for i := range 100 {
		reg.PushImage(t, fmt.Sprintf("wso2/am:4.2.0.%d", i), amd64)
	}
	c, counter := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)
	tags, err := c.Tags(ctx, reg.Ref("wso2/am"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		if _, err := c.Resolve(ctx, reg.Ref("wso2/am:"+tag)); err != nil {
			t.Fatal(err)
		}
	}
	if got := counter.Snapshot(); got != (registry.Counts{TagList: 1, ManifestHead: 100}) {
		t.Errorf("requests %+v, want 1 tag list and 100 HEADs", got)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	img := reg.PushImage(t, "proj/app:1", amd64)

	t.Run("short Retry-After is waited for", func(t *testing.T) {
		c, counter := newClient(t, []registry.Host{reg.Settings()}, registry.WithCacheSize(0))
		reg.RateLimit(1, "1")
		start := time.Now()
		if _, err := c.Inspect(ctxT(t), img.Ref); err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		if took := time.Since(start); took < time.Second || took > 5*time.Second {
			t.Errorf("took %s, want about 1s", took)
		}
		if got := counter.Snapshot(); got != (registry.Counts{ManifestGet: 2, BlobGet: 1}) {
			t.Errorf("requests %+v, want the manifest GET twice", got)
		}
	})
	t.Run("429 without Retry-After is sent again once, then left to the caller", func(t *testing.T) {
		c, counter := newClient(t, []registry.Host{reg.Settings()}, registry.WithCacheSize(0))
		reg.RateLimit(1, "")
		start := time.Now()
		if _, err := c.Resolve(ctxT(t), reg.Ref("proj/app:1")); err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if took := time.Since(start); took < time.Second || took > 3*time.Second {
			t.Errorf("took %s, want 1s of back-off", took)
		}
		reg.RateLimit(2, "")
		counter.Reset()
		start = time.Now()
		_, err := c.Resolve(ctxT(t), reg.Ref("proj/app:1"))
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("took %s, want one wait of 1s", took)
		}
		if !errors.Is(err, registry.ErrRateLimited) || !registry.Retryable(err) {
			t.Fatalf("err = %v, want a retryable ErrRateLimited", err)
		}
		if got := counter.Snapshot().ManifestHead; got != 2 {
			t.Errorf("%d HEADs, want 2: one retry inside the client", got)
		}
	})
	t.Run("long Retry-After fails at once with the delay", func(t *testing.T) {
		c, _ := newClient(t, []registry.Host{reg.Settings()}, registry.WithCacheSize(0))
		reg.RateLimit(1, "3600")
		start := time.Now()
		_, err := c.Inspect(ctxT(t), img.Ref)
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %s, want a quick failure", took)
		}
		if !errors.Is(err, registry.ErrRateLimited) || !registry.Retryable(err) {
			t.Fatalf("err = %v, want a retryable ErrRateLimited", err)
		}
		if d, ok := registry.RetryAfter(err); !ok || d < 3590*time.Second || d > time.Hour {
			t.Errorf("RetryAfter = %s, %v; want about an hour", d, ok)
		}
		// The host is left alone until then: the next call fails without a request.
		served := reg.Served()
		if _, err := c.Resolve(ctxT(t), reg.Ref("proj/app:1")); !errors.Is(err, registry.ErrRateLimited) {
			t.Errorf("next call: %v, want ErrRateLimited", err)
		}
		if reg.Served() != served {
			t.Errorf("the registry received %d requests while it asked to be left alone", reg.Served()-served)
		}
	})
	t.Run("Retry-After beyond the caller's deadline fails at once", func(t *testing.T) {
		c, _ := newClient(t, []registry.Host{reg.Settings()}, registry.WithCacheSize(0))
		reg.RateLimit(1, "5")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.Resolve(ctx, reg.Ref("proj/app:1"))
		if !errors.Is(err, registry.ErrRateLimited) || time.Since(start) > time.Second {
			t.Errorf("err = %v after %s, want ErrRateLimited at once", err, time.Since(start))
		}
	})
	t.Run("503 with Retry-After is waited for", func(t *testing.T) {
		c, _ := newClient(t, []registry.Host{reg.Settings()}, registry.WithCacheSize(0))
		reg.Fail(1, http.StatusServiceUnavailable, "1")
		if _, err := c.Resolve(ctxT(t), reg.Ref("proj/app:1")); err != nil {
			t.Errorf("Resolve: %v", err)
		}
	})
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	img := reg.PushImage(t, "proj/app:1", amd64)
	check := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, registry.ErrUnavailable) || !registry.Retryable(err) {
			t.Errorf("err = %v, want a retryable ErrUnavailable", err)
		}
	}
	t.Run("5xx", func(t *testing.T) {
		c, _ := newClient(t, []registry.Host{reg.Settings()})
		reg.Fail(10, http.StatusInternalServerError, "")
		defer reg.Fail(0, 0, "")
		_, err := c.Inspect(ctxT(t), img.Ref)
		check(t, err)
	})
	t.Run("503", func(t *testing.T) {
		c, _ := newClient(t, []registry.Host{reg.Settings()})
		reg.Fail(10, http.StatusServiceUnavailable, "")
		defer reg.Fail(0, 0, "")
		_, err := c.Resolve(ctxT(t), img.Ref)
		check(t, err)
	})
	t.Run("connections dropped", func(t *testing.T) {
		c, _ := newClient(t, []registry.Host{reg.Settings()})
		reg.SetDown(true)
		defer reg.SetDown(false)
		start := time.Now()
		_, err := c.Resolve(ctxT(t), reg.Ref("proj/app:1"))
		check(t, err)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %s", took)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		down := registrytest.New(t)
		cfg := down.Settings()
		down.Close()
		c, _ := newClient(t, []registry.Host{cfg})
		_, err := c.Resolve(ctxT(t), down.Ref("proj/app:1"))
		check(t, err)
	})
}

func TestNotFoundAndBadReferences(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	reg.PushImage(t, "proj/app:1", amd64)
	c, _ := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)
	for _, ref := range []string{reg.Ref("proj/app:2"), reg.Ref("proj/app@sha256:" + strings.Repeat("0", 64)), reg.Ref("proj/nothing:1")} {
		_, err := c.Inspect(ctx, ref)
		if !errors.Is(err, registry.ErrNotFound) || registry.Retryable(err) {
			t.Errorf("Inspect(%s) = %v, want a permanent ErrNotFound", ref, err)
		}
		if _, err := c.Resolve(ctx, ref); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Resolve(%s) = %v, want ErrNotFound", ref, err)
		}
	}
	for _, ref := range []string{"ocidir:///tmp/layout:1", reg.Host + "/Proj/App:1", reg.Ref("proj/app@sha256:12"), ""} {
		_, err := c.Inspect(ctx, ref)
		if !errors.Is(err, registry.ErrInvalidReference) || registry.Retryable(err) {
			t.Errorf("Inspect(%q) = %v, want ErrInvalidReference", ref, err)
		}
	}
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	const password = "s3cr3t-Pa55word"
	reg := registrytest.New(t, registrytest.WithBasicAuth("robot$harborflow", password))
	img := reg.PushImage(t, "proj/app:1", amd64)

	good, _ := newClient(t, []registry.Host{reg.Settings()})
	if _, err := good.Inspect(ctxT(t), img.Ref); err != nil {
		t.Fatalf("with the right password: %v", err)
	}

	core, logs := observer.New(zapcore.DebugLevel)
	for name, cfg := range map[string]registry.Host{
		"wrong password": {Name: reg.Host, PlainHTTP: true, Username: "robot$harborflow", Password: password + "-old"},
		"no credentials": {Name: reg.Host, PlainHTTP: true},
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := newClient(t, []registry.Host{cfg}, registry.WithLogger(zap.New(core)))
			_, err := c.Inspect(ctxT(t), img.Ref)
			if !errors.Is(err, registry.ErrUnauthorized) || registry.Retryable(err) {
				t.Fatalf("err = %v, want a permanent ErrUnauthorized", err)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the password is in the error: %v", err)
			}
		})
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), password) {
			t.Errorf("the password is in a log entry: %v %v", e.Message, e.ContextMap())
		}
	}
}

func TestUserAgent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	agents := map[string]int{}
	record := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			agents[r.UserAgent()]++
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	reg := registrytest.New(t, registrytest.WithMiddleware(record), registrytest.WithBasicAuth("u", "p"))
	idx := reg.PushIndex(t, "proj/app:1", registrytest.Index{Images: []registrytest.Image{amd64, arm64}})
	c, counter := newClient(t, []registry.Host{reg.Settings()}, registry.WithVersion("1.2.3"))
	ctx := ctxT(t)
	reg.RateLimit(1, "1")
	if _, err := c.Resolve(ctx, reg.Ref("proj/app:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inspect(ctx, idx.Ref); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Tags(ctx, reg.Ref("proj/app")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := registry.UserAgent("1.2.3")
	if len(agents) != 1 || agents[want] != int(counter.Snapshot().Total()) {
		t.Errorf("user agents %v for %d requests, want only %s", agents, counter.Snapshot().Total(), want)
	}
	if !strings.HasPrefix(want, registry.UserAgentPrefix) || want != "harborflow/1.2.3" {
		t.Errorf("User-Agent %q, want harborflow/<version> starting with UserAgentPrefix %q", want, registry.UserAgentPrefix)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.WithTLS())
	img := reg.PushImage(t, "proj/app:1", amd64)
	ctx := ctxT(t)

	verified, _ := newClient(t, []registry.Host{{Name: reg.Host}})
	_, err := verified.Resolve(ctx, img.Ref)
	if !errors.Is(err, registry.ErrTLS) || registry.Retryable(err) {
		t.Errorf("without ca_file: %v, want a permanent ErrTLS", err)
	}
	unlisted, _ := newClient(t, nil)
	if _, err := unlisted.Resolve(ctx, img.Ref); !errors.Is(err, registry.ErrTLS) {
		t.Errorf("host not configured: %v, want ErrTLS", err)
	}
	withCA, _ := newClient(t, []registry.Host{{Name: reg.Host, CAFile: reg.CAFile()}})
	if _, err := withCA.Inspect(ctx, img.Ref); err != nil {
		t.Errorf("with ca_file: %v", err)
	}
	insecure, _ := newClient(t, []registry.Host{{Name: reg.Host, Insecure: true}})
	if _, err := insecure.Inspect(ctx, img.Ref); err != nil {
		t.Errorf("with insecure: %v", err)
	}
	plain, _ := newClient(t, []registry.Host{{Name: reg.Host, PlainHTTP: true}})
	if _, err := plain.Resolve(ctx, img.Ref); err == nil {
		t.Errorf("plain HTTP to a TLS listener succeeded")
	}

	for name, cfg := range map[string]registry.Host{
		"missing ca_file": {Name: reg.Host, CAFile: t.TempDir() + "/none.pem"},
		"ca_file not PEM": {Name: reg.Host, CAFile: "registrytest/registrytest.go"},
	} {
		if _, err := registry.New([]registry.Host{cfg}); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestMaxConcurrency(t *testing.T) {
	t.Parallel()
	// Each request waits in the registry until `limit` requests are in flight together (proof the client lets
	// that many through), or until a deadline (the client held back: the peak shows it).
	type round struct {
		limit int64
		full  chan struct{}
		once  sync.Once
	}
	var (
		inFlight, peak atomic.Int64
		current        atomic.Pointer[round]
	)
	gated := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			if rd := current.Load(); rd != nil {
				if n >= rd.limit {
					rd.once.Do(func() { close(rd.full) })
				}
				select {
				case <-rd.full:
				case <-time.After(5 * time.Second):
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	reg := registrytest.New(t, registrytest.WithMiddleware(gated))
	var refs []string
	for i := range 16 {
		refs = append(refs, reg.PushImage(t, "proj/app", registrytest.Image{Labels: map[string]string{"n": fmt.Sprint(i)}}).Ref)
	}
	for _, limit := range []int{2, 6} {
		cfg := reg.Settings()
		cfg.MaxConcurrency = limit
		c, _ := newClient(t, []registry.Host{cfg}, registry.WithCacheSize(0))
		peak.Store(0)
		current.Store(&round{limit: int64(limit), full: make(chan struct{})})
		var wg sync.WaitGroup
		for _, ref := range refs {
			wg.Go(func() {
				if _, err := c.Inspect(ctxT(t), ref); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		current.Store(nil)
		if p := peak.Load(); p != int64(limit) {
			t.Errorf("max_concurrency %d: peak of %d requests in flight", limit, p)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, regs := range map[string][]registry.Host{
		"empty host":           {{Name: ""}},
		"host with a path":     {{Name: "registry.example/v2"}},
		"listed twice":         {{Name: "a.example"}, {Name: "a.example"}},
		"negative concurrency": {{Name: "a.example", MaxConcurrency: -1}},
	} {
		if _, err := registry.New(regs); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestTokenAuth covers bearer tokens as Harbor hands them out: one token per repository, fetched once.
func TestTokenAuth(t *testing.T) {
	t.Parallel()
	const password = "t0ken-Pa55word"
	reg := registrytest.New(t, registrytest.WithTokenAuth("robot$harborflow", password))
	a1 := reg.PushImage(t, "proj/a:1", amd64)
	a2 := reg.PushImage(t, "proj/a:2", arm64)
	b1 := reg.PushImage(t, "proj/b:1", registrytest.Image{Labels: map[string]string{"update_level": "1"}})
	c, counter := newClient(t, []registry.Host{reg.Settings()})
	ctx := ctxT(t)
	for _, step := range []struct {
		name string
		ref  string
		want registry.Counts
	}{
		{"first read of a repository: 401, token, retry", a1.Ref, registry.Counts{ManifestGet: 2, Token: 1, BlobGet: 1}},
		{"same repository: the token is reused", a2.Ref, registry.Counts{ManifestGet: 1, BlobGet: 1}},
		{"another repository: its own token", b1.Ref, registry.Counts{ManifestGet: 2, Token: 1, BlobGet: 1}},
	} {
		counter.Reset()
		if _, err := c.Inspect(ctx, step.ref); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := counter.Snapshot(); got != step.want {
			t.Errorf("%s: requests %+v, want %+v", step.name, got, step.want)
		}
	}

	cfg := reg.Settings()
	cfg.Password = password + "-old"
	bad, _ := newClient(t, []registry.Host{cfg})
	_, err := bad.Inspect(ctx, a1.Ref)
	if !errors.Is(err, registry.ErrUnauthorized) || registry.Retryable(err) || strings.Contains(err.Error(), password) {
		t.Errorf("wrong password: %v, want a permanent ErrUnauthorized without the password", err)
	}
}
