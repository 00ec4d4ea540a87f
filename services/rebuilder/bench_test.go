package rebuilder_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/imagetag"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/services/rebuilder"
)

// benchLayerSize is the size of the base image's big layer, the one an overlay build must not download.
const benchLayerSize = 50 << 20

// benchDockerfile builds the same files as the overlay's context, owned as the overlay owns them. The base
// has no shell, so there is no RUN.
const benchDockerfile = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY --chown=802:802 home/ /home/\n"

// benchBuilder is one recipe under measurement and what its builds cost.
type benchBuilder struct {
	recipe    string
	took      time.Duration
	served    int64 // blob bytes the registry served, whoever the client
	baseBytes int64 // of those, bytes of the base image's layers
	written   int64 // blob bytes the build uploaded (ImageRebuilt.BytesWritten)
	last      string
}

// BenchmarkRebuild rebuilds a derived image from a base with a 50 MB layer with the overlay builder and the
// dockerfile builder (buildah), producing the same files, in rounds whose order alternates. It reports the
// wall time of each build, their ratio (the target is ≥ 10), and the blob bytes the registry served during
// each, in all and of the base's layers (the target for the overlay is 0). Every build is forced, so every
// build really builds, under a new build number. Without buildah on PATH, only the overlay builds run.
func BenchmarkRebuild(b *testing.B) {
	ctx := context.Background()
	counter := &benchLayerCounter{}
	reg := registrytest.New(b, registrytest.WithMiddleware(counter.wrap))
	base := reg.PushImage(b, "wso2/am:4.2.0.16", registrytest.Image{
		Labels:    map[string]string{"update_level": "16"},
		User:      "802",
		Files:     map[string]string{"home/wso2carbon/README": "WSO2 API Manager 4.2.0\n"},
		LayerSize: benchLayerSize,
	})
	counter.watch(base.Layers...)
	// The recipe follows the floating version tag, which points to the same manifest.
	mediaType, body := reg.ReadManifest(b, "wso2/am:4.2.0.16")
	reg.PushRaw(b, "wso2/am:4.2.0", mediaType, body)

	overlayDir := b.TempDir()
	benchContext(b, overlayDir)
	dockerDir := b.TempDir()
	benchContext(b, dockerDir)
	benchWrite(b, filepath.Join(dockerDir, "Dockerfile"), []byte(benchDockerfile))

	recipe := func(name, builder, dir string) config.Rebuild {
		return config.Rebuild{
			Name: name, Base: reg.Ref("wso2/am:4.2.0"), Builder: builder, Context: dir, Dockerfile: "Dockerfile",
			Owner: "802:802", Target: reg.Ref("bench/am-" + name), Tag: imagetag.DefaultTemplate, Timeout: 10 * time.Minute,
		}
	}
	builders := []*benchBuilder{{recipe: "overlay"}}
	recipes := []config.Rebuild{recipe("overlay", config.BuilderOverlay, overlayDir)}
	client, err := registry.New([]config.Registry{reg.Config()})
	if err != nil {
		b.Fatal(err)
	}
	srv := bustest.Start(b)
	kv, err := srv.Bus.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		b.Fatal(err)
	}
	deps := rebuilder.Deps{Registry: client, State: kv}
	if _, err := exec.LookPath("buildah"); err == nil {
		bh, err := buildah.New([]config.Registry{reg.Config()}, buildah.WithWorkDir(b.TempDir()))
		if err != nil {
			b.Fatal(err)
		}
		deps.Buildah = bh
		builders = append(builders, &benchBuilder{recipe: "dockerfile"})
		recipes = append(recipes, recipe("dockerfile", config.BuilderDockerfile, dockerDir))
	} else {
		b.Log("buildah is not on PATH: the overlay builds run alone")
	}
	rb, err := rebuilder.New(recipes, "update_level", deps)
	if err != nil {
		b.Fatal(err)
	}

	build := func(bb *benchBuilder) {
		served, baseBytes := reg.BlobBytesServed(), counter.bytes()
		start := time.Now()
		res, err := rb.Rebuild(ctx, bb.recipe, true)
		bb.took += time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v", bb.recipe, err)
		}
		if res.GetDigest() == "" || res.GetUpdateLevel() != 16 || !strings.HasPrefix(res.GetTag(), "4.2.0.16.") {
			b.Fatalf("%s: rebuilt %s:%s at update level %d", bb.recipe, res.GetTarget(), res.GetTag(), res.GetUpdateLevel())
		}
		bb.served += reg.BlobBytesServed() - served
		bb.baseBytes += counter.bytes() - baseBytes
		bb.written += res.GetBytesWritten()
		bb.last = "bench/am-" + bb.recipe + "@" + res.GetDigest()
	}
	// One build of each first: the connections, and the target repositories with the layers a build
	// pushes again (the same files make the same layer) — as after the first update of a real recipe.
	for _, bb := range builders {
		build(bb)
		*bb = benchBuilder{recipe: bb.recipe, last: bb.last}
	}
	if len(builders) > 1 {
		overlay, docker := benchTopFiles(b, reg, builders[0].last), benchTopFiles(b, reg, builders[1].last)
		if !maps.Equal(overlay, docker) {
			b.Fatalf("the builders add different files:\noverlay    %v\ndockerfile %v", overlay, docker)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range builders {
			build(builders[(i+j)%len(builders)])
		}
	}
	n := float64(b.N)
	ms := func(bb *benchBuilder) float64 { return float64(bb.took.Milliseconds()) / n }
	for _, bb := range builders {
		b.ReportMetric(ms(bb), bb.recipe+"-ms/op")
		b.ReportMetric(float64(bb.served)/n/(1<<20), bb.recipe+"-registry-MB/op")
		b.ReportMetric(float64(bb.written)/n/(1<<20), bb.recipe+"-written-MB/op")
	}
	overlay := builders[0]
	b.ReportMetric(float64(overlay.baseBytes)/n, "overlay-base-layer-bytes/op")
	if len(builders) > 1 {
		docker := builders[1]
		b.ReportMetric(float64(docker.baseBytes)/n/(1<<20), "dockerfile-base-layer-MB/op")
		b.ReportMetric(ms(docker)/ms(overlay), "speedup")
		if ms(docker) < 10*ms(overlay) {
			b.Logf("overlay is %.1f× faster than the Dockerfile build; the target is ≥ 10×", ms(docker)/ms(overlay))
		}
	}
	if overlay.baseBytes != 0 {
		b.Errorf("overlay builds downloaded %d bytes of the base's layers, want 0", overlay.baseBytes)
	}
	if per := float64(overlay.served) / n; per >= 1<<20 {
		b.Errorf("the registry served %.0f blob bytes per overlay build, want far below 1 MB", per)
	}
}

// benchTopFiles lists the regular files of the top layer of repoDigest ("repo@digest"), with owner and size.
func benchTopFiles(b *testing.B, reg *registrytest.Registry, repoDigest string) map[string]string {
	b.Helper()
	_, body := reg.ReadManifest(b, repoDigest)
	var m struct {
		Layers []struct{ Digest string }
	}
	if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) == 0 {
		b.Fatalf("manifest of %s: %v (%d layers)", repoDigest, err, len(m.Layers))
	}
	repo, _, _ := strings.Cut(repoDigest, "@")
	files := map[string]string{}
	for name, hdr := range layerFiles(b, reg.ReadBlob(b, repo, m.Layers[len(m.Layers)-1].Digest)) {
		if hdr.Typeflag == tar.TypeReg {
			files[name] = fmt.Sprintf("%d:%d %d bytes", hdr.Uid, hdr.Gid, hdr.Size)
		}
	}
	return files
}

// benchContext writes the customisation both builders add: a trust store and a JDBC driver.
func benchContext(b *testing.B, dir string) {
	b.Helper()
	rng := rand.NewChaCha8([32]byte{'h', 'a', 'r', 'b', 'o', 'r', 'f', 'l', 'o', 'w'})
	product := filepath.Join(dir, "home", "wso2carbon", "wso2am-4.2.0", "repository")
	for name, size := range map[string]int{
		filepath.Join(product, "resources", "security", "client-truststore.jks"): 64 << 10,
		filepath.Join(product, "components", "lib", "mysql-connector.jar"):       1 << 20,
	} {
		data := make([]byte, size)
		_, _ = rng.Read(data)
		benchWrite(b, name, data)
	}
}

func benchWrite(b *testing.B, name string, data []byte) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

// benchLayerCounter counts the bytes of blob GET answers of the digests it watches.
type benchLayerCounter struct {
	mu      sync.Mutex
	watched map[string]bool
	n       int64
}

func (c *benchLayerCounter) watch(digests ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watched = map[string]bool{}
	for _, d := range digests {
		c.watched[d] = true
	}
}

func (c *benchLayerCounter) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *benchLayerCounter) add(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += int64(n)
}

func (c *benchLayerCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, dig, ok := strings.Cut(req.URL.Path, "/blobs/")
		c.mu.Lock()
		watched := ok && req.Method == http.MethodGet && c.watched[dig]
		c.mu.Unlock()
		if watched {
			w = &benchCountingWriter{ResponseWriter: w, add: c.add, status: http.StatusOK}
		}
		next.ServeHTTP(w, req)
	})
}

// benchCountingWriter counts the body bytes of a successful answer.
type benchCountingWriter struct {
	http.ResponseWriter
	add    func(int)
	status int
}

func (w *benchCountingWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *benchCountingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if w.status >= 200 && w.status < 300 {
		w.add(n)
	}
	return n, err
}

func (w *benchCountingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
