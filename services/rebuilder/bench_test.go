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
	"strconv"
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

// The base of the benchmark: an OS layer and a product layer, as a WSO2 image has them.
const (
	// benchProductSize is the product layer's big file: new in every update level.
	benchProductSize = 50 << 20
	// benchOSSize is the OS layer's big file: the same in every update level of a typical update.
	benchOSSize = 8 << 20
	// benchFirstLevel is the update level built before the measured ones.
	benchFirstLevel = 16
)

// benchDockerfile builds the same files as the overlay's context, owned as the overlay owns them. The base
// has no shell, so there is no RUN.
const benchDockerfile = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY --chown=802:802 home/ /home/\n"

// benchBuilder is one recipe under measurement and what its builds cost, summed over the measured builds.
type benchBuilder struct {
	recipe  string
	took    time.Duration
	served  int64 // blob bytes the registry served, whoever the client
	os      int64 // of those, bytes of the base's OS layers
	product int64 // of those, bytes of the base's product layers
	read    int64 // blob bytes the build downloaded by its own count (ImageRebuilt.BytesRead)
	written int64 // blob bytes the build uploaded (ImageRebuilt.BytesWritten)
	disk    int64 // bytes written towards disk by this process and its children (see diskWritten)
	last    string
}

// BenchmarkRebuild measures the overlay builder against the dockerfile builder (buildah) on real updates of a
// WSO2-shaped base: every iteration pushes a new update level (4.2.0.N, with 4.2.0 moved to it) and each
// recipe builds it as a trigger would (not forced), the overlay and the dockerfile build in turns whose order
// alternates. Both add the same files.
//
//   - typical: the OS layer stays the same across levels and the product layer is new (50 MB of incompressible
//     bytes). The overlay keeps base layer trees in the layer-trees KV bucket, as in production, so it reads
//     only the new product layer (and the configs).
//   - cold: every layer of every level is new, OS layer too, so the overlay reads every base layer once.
//
// Per builder it reports the wall time of a build, the speedup (dockerfile/overlay; the target is ≥ 10× for
// the typical case), the blob MB the registry served during a build (and, for the overlay, its own count in
// image.rebuilt, and how much of that was the OS layer), the blob MB it uploaded, and the MB it wrote
// towards disk. The overlay never writes the base to disk: only its own layer (as a tar, a gzip and the gzip
// staged for the write). Without buildah on PATH, only the overlay builds run.
//
// With the default -benchtime each case runs one measured iteration (a Dockerfile build takes seconds); use
// -benchtime 5x for steadier figures.
func BenchmarkRebuild(b *testing.B) {
	b.Run("typical", func(b *testing.B) { benchRebuild(b, false) })
	b.Run("cold", func(b *testing.B) { benchRebuild(b, true) })
}

func benchRebuild(b *testing.B, cold bool) {
	ctx := context.Background()
	counter := &benchLayerCounter{}
	reg := registrytest.New(b, registrytest.WithMiddleware(counter.wrap))
	// push pushes update level and moves the floating tag to it; it returns the blob sizes of its OS and
	// product layers.
	push := func(level int) (osSize, productSize int64) {
		b.Helper()
		tag := "4.2.0." + strconv.Itoa(level)
		p := reg.PushImage(b, "wso2/am:"+tag, registrytest.Image{
			Labels:  map[string]string{"update_level": strconv.Itoa(level)},
			User:    "802",
			Entries: benchBase(level, cold),
		})
		counter.watch(p.Layers[0], "os")
		counter.watch(p.Layers[1], "product")
		// The recipes follow the floating version tag: move it to the new level.
		mediaType, body := reg.ReadManifest(b, "wso2/am:"+tag)
		reg.PushRaw(b, "wso2/am:4.2.0", mediaType, body)
		var m struct {
			Layers []struct{ Size int64 }
		}
		if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) != 2 {
			b.Fatalf("manifest of %s: %v (%d layers, want 2)", tag, err, len(m.Layers))
		}
		return m.Layers[0].Size, m.Layers[1].Size
	}

	overlayDir := b.TempDir()
	contextSize := benchContext(b, overlayDir)
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
	client, err := registry.New([]registry.Host{reg.Settings()})
	if err != nil {
		b.Fatal(err)
	}
	srv := bustest.Start(b)
	kv, err := srv.Bus.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		b.Fatal(err)
	}
	// The layer trees persist across builds, as in production (services/harborflow/run.go); in the cold case
	// they never hold a layer of the level being built.
	trees, err := srv.Bus.KeyValue(ctx, event.BucketLayerTrees)
	if err != nil {
		b.Fatal(err)
	}
	deps := rebuilder.Deps{Registry: client, State: kv, Trees: rebuilder.LayerTrees(trees)}
	if _, err := exec.LookPath("buildah"); err == nil {
		bh, err := buildah.New([]buildah.Host{reg.Config().BuildahHost()}, buildah.WithWorkDir(b.TempDir()))
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
	_, diskOK := diskWritten()
	if !diskOK {
		b.Log("bytes written to disk are not counted on this system")
	}

	build := func(bb *benchBuilder, level int) {
		b.Helper()
		served, counted := reg.BlobBytesServed(), counter.snapshot()
		disk, _ := diskWritten()
		start := time.Now()
		manual, err := rb.Rebuild(ctx, bb.recipe, false)
		res := manual.Rebuilt
		took := time.Since(start)
		diskAfter, _ := diskWritten()
		if err != nil {
			b.Fatalf("%s: %v", bb.recipe, err)
		}
		prefix := fmt.Sprintf("4.2.0.%d.", level)
		if res.GetDigest() == "" || res.GetUpdateLevel() != int64(level) || !strings.HasPrefix(res.GetTag(), prefix) {
			b.Fatalf("%s: rebuilt %s:%s at update level %d, want a tag %s* at level %d", bb.recipe, res.GetTarget(), res.GetTag(),
				res.GetUpdateLevel(), prefix, level)
		}
		now := counter.snapshot()
		bb.took += took
		bb.served += reg.BlobBytesServed() - served
		bb.os += now["os"] - counted["os"]
		bb.product += now["product"] - counted["product"]
		bb.read += res.GetBytesRead()
		bb.written += res.GetBytesWritten()
		bb.disk += diskAfter - disk
		bb.last = "bench/am-" + bb.recipe + "@" + res.GetDigest()
	}
	// One build of each first: the connections, the target repositories with the layers a build pushes again
	// (the same files make the same layer), and, in the typical case, the trees of the OS layer — as after the
	// first update of a real recipe.
	push(benchFirstLevel)
	for _, bb := range builders {
		build(bb, benchFirstLevel)
		*bb = benchBuilder{recipe: bb.recipe, last: bb.last}
	}
	if len(builders) > 1 {
		overlay, docker := benchTopFiles(b, reg, builders[0].last), benchTopFiles(b, reg, builders[1].last)
		if !maps.Equal(overlay, docker) {
			b.Fatalf("the builders add different files:\noverlay    %v\ndockerfile %v", overlay, docker)
		}
	}
	// What the overlay must read of the measured levels' layers: each new layer once, whole.
	var wantOS, wantProduct int64
	for i := 0; b.Loop(); i++ {
		level := benchFirstLevel + 1 + i
		b.StopTimer()
		osSize, productSize := push(level)
		if cold {
			wantOS += osSize
		}
		wantProduct += productSize
		b.StartTimer()
		for j := range builders {
			build(builders[(i+j)%len(builders)], level)
		}
	}

	n := float64(b.N)
	const mb = 1 << 20
	ms := func(bb *benchBuilder) float64 { return float64(bb.took.Microseconds()) / 1e3 / n }
	overlay := builders[0]
	for _, bb := range builders {
		b.ReportMetric(ms(bb), bb.recipe+"-ms/op")
		b.ReportMetric(float64(bb.served)/n/mb, bb.recipe+"-registry-MB/op")
		b.ReportMetric(float64(bb.written)/n/mb, bb.recipe+"-uploaded-MB/op")
		if diskOK {
			b.ReportMetric(float64(bb.disk)/n/mb, bb.recipe+"-disk-MB/op")
		}
	}
	b.ReportMetric(float64(overlay.read)/n/mb, "overlay-bytesRead-MB/op")
	b.ReportMetric(float64(overlay.os)/n/mb, "overlay-os-layer-MB/op")
	if len(builders) > 1 {
		docker := builders[1]
		b.ReportMetric(ms(docker)/ms(overlay), "speedup")
		if !cold && ms(docker) < 10*ms(overlay) {
			b.Logf("typical update: the overlay is %.1f× faster than the Dockerfile build (%.0f ms against %.0f ms); the target is ≥ 10×",
				ms(docker)/ms(overlay), ms(overlay), ms(docker))
		}
	}

	// The overlay reads each new base layer once, whole (to its end, where its digest is checked), and nothing
	// else but configs: the product layer in a typical update, and the OS layer too in a cold one.
	if overlay.product != wantProduct {
		b.Errorf("the overlay read %d bytes of the product layers, want %d (each new layer once)", overlay.product, wantProduct)
	}
	if overlay.os != wantOS {
		b.Errorf("the overlay read %d bytes of the OS layers, want %d", overlay.os, wantOS)
	}
	// Besides the layers, the configs: the registry's count and the overlay's own differ by the config the
	// rebuilder reads to inspect the base, outside the overlay.
	if other := (overlay.served - overlay.os - overlay.product) / int64(b.N); other > 64<<10 {
		b.Errorf("the overlay read %d blob bytes per build besides the base's layers, want only configs (< 64 KB)", other)
	}
	if diff := (overlay.served - overlay.read) / int64(b.N); diff < 0 || diff > 64<<10 {
		b.Errorf("the registry served %d blob bytes per overlay build and the overlay counted %d: they should agree within a config",
			overlay.served/int64(b.N), overlay.read/int64(b.N))
	}
	// On disk the overlay writes its own layer three times (the tar, its gzip, and the gzip again in the write's
	// staging layout) and never the base: far below one base layer. The slack is for tar headers and the bus's
	// store (the embedded JetStream writes the build records and layer trees in this process).
	if per := overlay.disk / int64(b.N); diskOK && per > 3*contextSize+1<<20 {
		b.Errorf("the overlay wrote %d bytes towards disk per build, want about 3 copies of its %d-byte layer (tar, gzip, "+
			"staged gzip) and nothing of the base's layers", per, contextSize)
	}
}

// benchBase is the layers of update level: a WSO2 OS layer with a JVM and a WSO2 product layer with the product,
// whose home directory belongs to wso2carbon (802:802, 0750). The product is new in every level; the OS layer
// is the same in every level, unless cold, where it is new too.
func benchBase(level int, cold bool) [][]registrytest.Entry {
	layers := registrytest.WSO2Layers(strconv.Itoa(level))
	osSeed := uint64(0)
	if cold {
		osSeed = 1<<32 | uint64(level)
	}
	layers[0] = append(layers[0],
		registrytest.Dir("usr/lib/jvm", 0o755, 0, 0),
		registrytest.RandomFile("usr/lib/jvm/libjvm.so", benchOSSize, osSeed, 0o755, 0, 0))
	layers[1] = append(layers[1],
		registrytest.Dir("home/wso2carbon/wso2am-4.2.0/lib", 0o750, 802, 802),
		registrytest.RandomFile("home/wso2carbon/wso2am-4.2.0/lib/wso2am.jar", benchProductSize, uint64(level), 0o640, 802, 802))
	return layers
}

// benchTopFiles lists the regular files of the top layer of repoDigest ("repo@digest"), with owner and size;
// directory entries (the overlay writes every parent as the base has it) are left out.
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

// benchContext writes the customisation both builders add, a trust store and a JDBC driver, and returns its
// size in bytes.
func benchContext(b *testing.B, dir string) int64 {
	b.Helper()
	rng := rand.NewChaCha8([32]byte{'h', 'a', 'r', 'b', 'o', 'r', 'f', 'l', 'o', 'w'})
	product := filepath.Join(dir, "home", "wso2carbon", "wso2am-4.2.0", "repository")
	var total int64
	for name, size := range map[string]int{
		filepath.Join(product, "resources", "security", "client-truststore.jks"): 64 << 10,
		filepath.Join(product, "components", "lib", "mysql-connector.jar"):       1 << 20,
	} {
		data := make([]byte, size)
		_, _ = rng.Read(data)
		benchWrite(b, name, data)
		total += int64(size)
	}
	return total
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

// benchLayerCounter counts the bytes of blob GET answers of the digests it watches, by kind.
type benchLayerCounter struct {
	mu      sync.Mutex
	watched map[string]string // digest → kind
	n       map[string]int64  // kind → bytes
}

// watch counts the blob digest under kind from now on.
func (c *benchLayerCounter) watch(digest, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watched == nil {
		c.watched, c.n = map[string]string{}, map[string]int64{}
	}
	c.watched[digest] = kind
}

// snapshot is the bytes counted so far, by kind.
func (c *benchLayerCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

func (c *benchLayerCounter) add(kind string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[kind] += int64(n)
}

func (c *benchLayerCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, dig, ok := strings.Cut(req.URL.Path, "/blobs/")
		c.mu.Lock()
		kind := c.watched[dig]
		c.mu.Unlock()
		if ok && req.Method == http.MethodGet && kind != "" {
			w = &benchCountingWriter{ResponseWriter: w, add: func(n int) { c.add(kind, n) }, status: http.StatusOK}
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
