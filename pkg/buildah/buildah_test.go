package buildah_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regclient/regclient"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/ref"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/logging"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// rebuildDockerfile is what a customer's Dockerfile on a WSO2 base looks like, without RUN (the test bases
// have no shell, and there is no qemu for foreign platforms).
const rebuildDockerfile = `ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY app.conf /opt/app/app.conf
LABEL com.acme.rebuilt="yes"
`

// newBuilder returns a Builder for regs whose work directories go under a directory of the test, which it
// also returns; the test is skipped when buildah is not installed.
func newBuilder(t *testing.T, regs []buildah.Host, opts ...buildah.Opt) (*buildah.Builder, string) {
	t.Helper()
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not on PATH")
	}
	work := t.TempDir()
	b, err := buildah.New(regs, append([]buildah.Opt{buildah.WithWorkDir(work)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b, work
}

// buildContext writes a build context with dockerfile as its Dockerfile and app.conf.
func buildContext(t *testing.T, dockerfile string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"Dockerfile": dockerfile, "app.conf": "feature=on\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// assertEmpty fails unless dir (a Builder's work dir root) holds nothing.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("work dir root %s still holds %v", dir, entries)
	}
}

func TestBuildSinglePlatform(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{Labels: map[string]string{"update_level": "7"}})
	b, work := newBuilder(t, []buildah.Host{reg.Config().BuildahHost()})

	res, err := b.Build(context.Background(), buildah.Spec{
		Context:   buildContext(t, rebuildDockerfile),
		BuildArgs: map[string]string{"BASE_IMAGE": base.Ref},
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Logf("single-platform build took %s", res.Duration)
	if !slices.Equal(res.Platforms, []string{"linux/amd64"}) || res.MediaType != registrytest.MediaOCIManifest {
		t.Errorf("result is %s for %v, want an image manifest for linux/amd64", res.MediaType, res.Platforms)
	}
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	data, err := os.ReadFile(filepath.Join(res.Layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != res.Digest {
		t.Errorf("index.json lists %+v, want only %s", index.Manifests, res.Digest)
	}

	ctx := context.Background()
	rc := regclient.New()
	rf, err := ref.New("ocidir://" + res.Layout)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rc.ManifestGet(ctx, rf)
	if err != nil {
		t.Fatalf("reading the layout's manifest: %v", err)
	}
	if m.GetDescriptor().Digest.String() != res.Digest {
		t.Errorf("ocidir://layout resolves to %s, want %s", m.GetDescriptor().Digest, res.Digest)
	}
	cfg, err := rc.ImageConfig(ctx, rf)
	if err != nil {
		t.Fatalf("reading the image config: %v", err)
	}
	labels := cfg.GetConfig().Config.Labels
	if labels["com.acme.rebuilt"] != "yes" || labels["update_level"] != "7" {
		t.Errorf("labels %v, want com.acme.rebuilt=yes and the base's update_level=7", labels)
	}
	layers, err := m.(manifest.Imager).GetLayers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers %v (%v), want the base's and one new", layers, err)
	}
	br, err := rc.BlobGet(ctx, rf, layers[1])
	if err != nil {
		t.Fatalf("reading the new layer: %v", err)
	}
	defer br.Close()
	if got := fileInLayer(t, br, "opt/app/app.conf"); got != "feature=on\n" {
		t.Errorf("opt/app/app.conf in the new layer holds %q", got)
	}

	log, err := os.ReadFile(res.Log)
	if err != nil || !bytes.Contains(log, []byte("STEP 2/3: COPY app.conf /opt/app/app.conf")) {
		t.Errorf("build log (%v) lacks the COPY step:\n%s", err, log)
	}
	if err := res.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	assertEmpty(t, work)
}

// fileInLayer returns the content of name in the gzipped tar r.
func fileInLayer(t *testing.T, r io.Reader, name string) string {
	t.Helper()
	gz, err := gzip.NewReader(r)
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("layer has no %s", name)
		}
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		if strings.TrimPrefix(hdr.Name, "./") == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("layer: %v", err)
			}
			return string(b)
		}
	}
}

func TestBuildMultiPlatform(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushIndex(t, "wso2/am:4.2.0", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64"}, {Platform: "linux/arm64"},
	}})
	b, work := newBuilder(t, []buildah.Host{reg.Config().BuildahHost()})

	platforms := []string{"linux/amd64", "linux/arm64"}
	res, err := b.Build(context.Background(), buildah.Spec{
		Context:   buildContext(t, rebuildDockerfile),
		BuildArgs: map[string]string{"BASE_IMAGE": base.Ref},
		Platforms: platforms,
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	defer func() {
		if err := res.Cleanup(); err != nil {
			t.Error(err)
		}
		assertEmpty(t, work)
	}()
	t.Logf("two-platform build took %s", res.Duration)
	if !slices.Equal(res.Platforms, platforms) || res.MediaType != registrytest.MediaOCIIndex {
		t.Errorf("result is %s for %v, want an index for %v", res.MediaType, res.Platforms, platforms)
	}

	ctx := context.Background()
	rc := regclient.New()
	rf, err := ref.New("ocidir://" + res.Layout)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rc.ManifestGet(ctx, rf)
	if err != nil {
		t.Fatalf("reading the layout's index: %v", err)
	}
	idx, ok := m.(manifest.Indexer)
	if !ok {
		t.Fatalf("layout holds %s, want an index", m.GetDescriptor().MediaType)
	}
	list, err := idx.GetManifestList()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range list {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		got = append(got, d.Platform.OS+"/"+d.Platform.Architecture)
		cfg, err := rc.ImageConfig(ctx, rf.SetDigest(d.Digest.String()))
		if err != nil {
			t.Fatalf("config of %s: %v", d.Digest, err)
		}
		c := cfg.GetConfig()
		if c.Architecture != d.Platform.Architecture || c.OS != "linux" || c.Config.Labels["com.acme.rebuilt"] != "yes" {
			t.Errorf("%s: config is %s/%s with labels %v", d.Platform, c.OS, c.Architecture, c.Config.Labels)
		}
	}
	if !slices.Equal(got, platforms) {
		t.Errorf("index platforms %v, want %v", got, platforms)
	}
}

func TestBuildFailingStep(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	base := reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	core, logs := observer.New(zap.InfoLevel)
	b, work := newBuilder(t, []buildah.Host{reg.Config().BuildahHost()}, buildah.WithLogger(zap.New(core)), buildah.WithLogTail(5))

	res, err := b.Build(context.Background(), buildah.Spec{
		Context:   buildContext(t, rebuildDockerfile+"RUN /bin/false\n"),
		BuildArgs: map[string]string{"BASE_IMAGE": base.Ref},
	})
	var be *buildah.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("Build = %v, %v; want a *BuildError", res, err)
	}
	t.Logf("error: %v\ntail:\n%s", err, strings.Join(be.Tail, "\n"))
	if be.Command != "bud" || be.ExitCode != 1 {
		t.Errorf("failed command %q exit %d, want bud exit 1", be.Command, be.ExitCode)
	}
	if !strings.HasPrefix(err.Error(), `buildah bud failed (exit 1): building at STEP "RUN /bin/false"`) {
		t.Errorf("error %q does not name the failing step", err)
	}
	if !strings.Contains(strings.Join(be.Tail, "\n"), "/bin/sh: no such file or directory") {
		t.Errorf("tail does not say why the step failed:\n%s", strings.Join(be.Tail, "\n"))
	}
	if errors.Is(err, buildah.ErrPullBase) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v matches ErrPullBase or DeadlineExceeded", err)
	}
	if len(be.Tail) != 5 {
		t.Errorf("tail has %d lines, want WithLogTail's 5", len(be.Tail))
	}
	warn := logs.FilterMessage("buildah build failed").FilterLevelExact(zap.WarnLevel).All()
	if len(warn) != 1 || !strings.Contains(warn[0].ContextMap()[logging.FieldReason].(string), `STEP 4/4: RUN /bin/false`) {
		t.Errorf("want one warning with the tail as %s, got %+v", logging.FieldReason, warn)
	}
	if n := logs.FilterMessage("buildah build starting").Len(); n != 1 {
		t.Errorf("%d start messages, want 1", n)
	}
	assertEmpty(t, work)
}

func TestBuildChecksSpecBeforeRunningBuildah(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "buildah-ran")
	fake := filepath.Join(dir, "buildah")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	b, err := buildah.New(nil, buildah.WithPath(fake), buildah.WithWorkDir(work))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctxDir := buildContext(t, rebuildDockerfile)
	for _, tc := range []struct {
		name     string
		spec     buildah.Spec
		want     string
		notExist bool
	}{
		{"no context dir", buildah.Spec{Context: filepath.Join(dir, "nope")},
			"build context directory " + filepath.Join(dir, "nope") + ": stat", true},
		{"context is a file", buildah.Spec{Context: fake}, "build context " + fake + ": not a directory", false},
		{"no Dockerfile", buildah.Spec{Context: dir}, "checking Dockerfile " + filepath.Join(dir, "Dockerfile") + ": stat", true},
		{"no named Dockerfile", buildah.Spec{Context: ctxDir, Dockerfile: "build/Dockerfile.prod"},
			"checking Dockerfile " + filepath.Join(ctxDir, "build/Dockerfile.prod") + ": stat", true},
		{"Dockerfile outside the context", buildah.Spec{Context: ctxDir, Dockerfile: "../Dockerfile"},
			"checking Dockerfile ../Dockerfile: must be a path inside the build context", false},
		{"bad platform", buildah.Spec{Context: ctxDir, Platforms: []string{"linux"}},
			`platform "linux": want os/arch[/variant]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Build(context.Background(), tc.spec)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Build error %v, want one starting %q", err, tc.want)
			}
			if errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %t", err, !tc.notExist)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("buildah ran")
	}
	assertEmpty(t, work)
}

func TestNewWithoutBuildah(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := buildah.New(nil)
	if err == nil || !strings.HasPrefix(err.Error(), "buildah not found on PATH: install the buildah package") {
		t.Errorf("New = %v", err)
	}
}

func TestBuildTimeout(t *testing.T) {
	t.Parallel()
	// The registry answers the base's manifest only when the client gives up, so buildah hangs pulling it.
	pulling := make(chan struct{})
	var once sync.Once
	reg := registrytest.New(t, registrytest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				once.Do(func() { close(pulling) })
				<-r.Context().Done()
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	base := reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	b, work := newBuilder(t, []buildah.Host{reg.Config().BuildahHost()})

	start := time.Now()
	_, err := b.Build(context.Background(), buildah.Spec{
		Context:   buildContext(t, rebuildDockerfile),
		BuildArgs: map[string]string{"BASE_IMAGE": base.Ref},
		Timeout:   2 * time.Second,
	})
	t.Logf("timed-out build returned after %s: %v", time.Since(start), err)
	if err == nil || err.Error() != "build timed out after 2s" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Build error %v, want build timed out after 2s matching context.DeadlineExceeded", err)
	}
	select {
	case <-pulling:
	default:
		t.Error("buildah never asked for the base manifest; the timeout struck before it ran")
	}
	if left := processesMentioning(t, work); len(left) > 0 {
		t.Errorf("buildah processes left: %v", left)
	}
	assertEmpty(t, work)
}

// processesMentioning lists the processes whose command line or environment mention s (buildah's get the
// work dir in both).
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var found []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == self {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			data, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && bytes.Contains(data, []byte(s)) {
				found = append(found, e.Name()+": "+strings.ReplaceAll(string(data), "\x00", " "))
				break
			}
		}
	}
	return found
}

func TestBuildBasicAuth(t *testing.T) {
	t.Parallel()
	const password = "pw-7f3c9a41e2"
	reg := registrytest.New(t, registrytest.WithBasicAuth("robot$builder", password))
	base := reg.PushImage(t, "wso2/am:4.2.0", registrytest.Image{})
	b, work := newBuilder(t, []buildah.Host{reg.Config().BuildahHost()})
	spec := buildah.Spec{
		Context:   buildContext(t, rebuildDockerfile),
		BuildArgs: map[string]string{"BASE_IMAGE": base.Ref},
	}

	res, err := b.Build(context.Background(), spec)
	if err != nil {
		t.Fatalf("Build with credentials: %v", err)
	}
	log, err := os.ReadFile(res.Log)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(log, []byte(password)) {
		t.Errorf("the build log holds the password:\n%s", log)
	}
	if err := res.Cleanup(); err != nil {
		t.Fatal(err)
	}

	// A failing build with the same credentials: neither the error nor the tail may hold the password.
	failing := spec
	failing.Context = buildContext(t, rebuildDockerfile+"RUN /bin/false\n")
	_, err = b.Build(context.Background(), failing)
	var be *buildah.BuildError
	if !errors.As(err, &be) {
		t.Fatalf("failing Build = %v, want a *BuildError", err)
	}
	if strings.Contains(err.Error(), password) || strings.Contains(strings.Join(be.Tail, "\n"), password) {
		t.Errorf("the error or its tail holds the password: %v\n%s", err, strings.Join(be.Tail, "\n"))
	}

	// Without credentials, the pull fails and says so.
	anon := reg.Config().BuildahHost()
	anon.Username, anon.Password = "", ""
	b2, work2 := newBuilder(t, []buildah.Host{anon})
	_, err = b2.Build(context.Background(), spec)
	t.Logf("without credentials: %v", err)
	if !errors.Is(err, buildah.ErrPullBase) || !errors.As(err, &be) || be.Base != base.Ref ||
		!strings.HasPrefix(err.Error(), "pulling base "+base.Ref+": ") || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("Build without credentials = %v, want a pull failure of %s saying unauthorized", err, base.Ref)
	}
	assertEmpty(t, work)
	assertEmpty(t, work2)
}

func TestBuildMissingBase(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	b, work := newBuilder(t, []buildah.Host{reg.Config().BuildahHost()})
	missing := reg.Ref("wso2/am:4.2.0.99")
	_, err := b.Build(context.Background(), buildah.Spec{
		Context:   buildContext(t, rebuildDockerfile),
		BuildArgs: map[string]string{"BASE_IMAGE": missing},
	})
	t.Logf("missing base: %v", err)
	if !errors.Is(err, buildah.ErrPullBase) || !strings.HasPrefix(err.Error(), "pulling base "+missing+": ") ||
		!strings.Contains(err.Error(), "manifest unknown") {
		t.Errorf("Build = %v, want a pull failure of %s", err, missing)
	}
	assertEmpty(t, work)
}

func TestNewEnv(t *testing.T) {
	t.Parallel()
	if _, err := buildah.NewEnv(t.TempDir(), "btrfs", nil); err == nil || !strings.Contains(err.Error(), `"btrfs"`) {
		t.Errorf("NewEnv with driver btrfs: %v; want an error naming it", err)
	}
	if _, err := buildah.NewEnv(t.TempDir(), buildah.DriverVFS, []buildah.Host{{Name: "reg example"}}); err == nil {
		t.Error("NewEnv with registry host \"reg example\": no error")
	}

	dir := t.TempDir()
	e, err := buildah.NewEnv(dir, buildah.DriverOverlay, []buildah.Host{{Name: "127.0.0.1:5000", PlainHTTP: true}})
	if err != nil {
		t.Fatalf("NewEnv: %v", err)
	}
	args := e.Args("images")
	if i := slices.Index(args, "--storage-driver"); i < 0 || args[i+1] != "overlay" || args[len(args)-1] != "images" {
		t.Errorf("Args(images) = %q; want --storage-driver overlay among the global arguments, then images", args)
	}
	if !slices.Contains(e.Environ(), "STORAGE_DRIVER=overlay") {
		t.Errorf("Environ() = %q; want STORAGE_DRIVER=overlay", e.Environ())
	}
	storageConf, err := os.ReadFile(filepath.Join(dir, "conf", "storage.conf"))
	if err != nil || !strings.Contains(string(storageConf), `driver = "overlay"`) ||
		!strings.Contains(string(storageConf), strconv.Quote(e.Storage)) {
		t.Errorf("storage.conf: %v\n%s\nwant the overlay driver and graph root %s", err, storageConf, e.Storage)
	}
	regConf, err := os.ReadFile(filepath.Join(dir, "conf", "registries.conf"))
	if err != nil || !strings.Contains(string(regConf), "location = \"127.0.0.1:5000\"\ninsecure = true") {
		t.Errorf("registries.conf: %v\n%s\nwant 127.0.0.1:5000 insecure", err, regConf)
	}
}
