package registry_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// BenchmarkInspect reports the requests each kind of inspection costs, without and with the caches.
func BenchmarkInspect(b *testing.B) {
	reg := registrytest.New(b)
	img := reg.PushImage(b, "bench/app:1", amd64)
	idx := reg.PushIndex(b, "bench/multi:1", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", Labels: map[string]string{"update_level": "7"}},
		{Platform: "linux/arm64", Labels: map[string]string{"update_level": "7"}},
	}, Attestations: true})
	ctx := context.Background()
	for _, bc := range []struct {
		name  string
		cache int
		op    func(c *registry.Client) error
	}{
		{"image-by-digest/cold", 0, func(c *registry.Client) error { _, err := c.Inspect(ctx, img.Ref); return err }},
		{"image-by-digest/cached", registry.DefaultCacheSize, func(c *registry.Client) error { _, err := c.Inspect(ctx, img.Ref); return err }},
		{"image-by-tag/cold", 0, func(c *registry.Client) error { _, err := c.Inspect(ctx, reg.Ref("bench/app:1")); return err }},
		{"resolve-then-inspect/cached", registry.DefaultCacheSize, func(c *registry.Client) error {
			d, err := c.Resolve(ctx, reg.Ref("bench/app:1"))
			if err == nil {
				_, err = c.Inspect(ctx, reg.Ref("bench/app:1@"+d.Digest))
			}
			return err
		}},
		{"index-2-platforms/cold", 0, func(c *registry.Client) error { _, err := c.Inspect(ctx, idx.Ref); return err }},
		{"index-2-platforms/cached", registry.DefaultCacheSize, func(c *registry.Client) error { _, err := c.Inspect(ctx, idx.Ref); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, counter := newClient(b, []registry.Host{reg.Settings()}, registry.WithCacheSize(bc.cache))
			if err := bc.op(c); err != nil { // warm the caches and the connections
				b.Fatal(err)
			}
			counter.Reset()
			b.ResetTimer()
			for b.Loop() {
				if err := bc.op(c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(counter.Snapshot().Total())/float64(b.N), "requests/op")
		})
	}
}

const benchConcurrency = 16

// benchImages pushes n distinct single-platform images.
func benchImages(b *testing.B, reg *registrytest.Registry, n int) []registrytest.Pushed {
	imgs := make([]registrytest.Pushed, n)
	for i := range imgs {
		imgs[i] = reg.PushImage(b, "bench/many", registrytest.Image{
			Labels: map[string]string{"update_level": fmt.Sprint(i), "com.wso2.docker.source": "https://github.com/wso2/docker-apim"},
		})
	}
	return imgs
}

// inspector is one way to read an image's manifest and config labels.
type inspector func(ctx context.Context, img registrytest.Pushed) (map[string]string, error)

// clientInspector inspects with the Client, caches off so that every inspection makes its two requests.
func clientInspector(b *testing.B, reg *registrytest.Registry, counter *registry.Counter) inspector {
	cfg := reg.Settings()
	cfg.MaxConcurrency = benchConcurrency
	c, err := registry.New([]registry.Host{cfg}, registry.WithCacheSize(0), registry.WithTransport(counter.Wrap))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return func(ctx context.Context, img registrytest.Pushed) (map[string]string, error) {
		a, err := c.Inspect(ctx, img.Ref)
		if err != nil {
			return nil, err
		}
		return a.Labels, nil
	}
}

// manifestAccept is what a client that reads every kind of manifest must accept (regclient sends these).
var manifestAccept = strings.Join([]string{
	registrytest.MediaOCIIndex, registrytest.MediaOCIManifest, registrytest.MediaDockerList, registrytest.MediaDockerManifest,
	"application/vnd.docker.distribution.manifest.v1+prettyjws", "application/vnd.docker.distribution.manifest.v1+json",
	"application/vnd.oci.artifact.manifest.v1+json",
}, ", ")

// plainInspector makes the same two requests with net/http: GET the manifest by digest, GET the config.
func plainInspector(b *testing.B, reg *registrytest.Registry, counter *registry.Counter) inspector {
	return netHTTPInspector(b, reg, counter, false)
}

// verifyingInspector is plainInspector checking the digests of what it reads, as the Client does.
func verifyingInspector(b *testing.B, reg *registrytest.Registry, counter *registry.Counter) inspector {
	return netHTTPInspector(b, reg, counter, true)
}

func netHTTPInspector(b *testing.B, reg *registrytest.Registry, counter *registry.Counter, verify bool) inspector {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = benchConcurrency
	hc := &http.Client{Transport: counter.Wrap(t)}
	b.Cleanup(t.CloseIdleConnections)
	get := func(ctx context.Context, url, accept, dig string, v any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", accept)
		req.Header.Set("User-Agent", "harborflow/bench")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if verify && fmt.Sprintf("sha256:%x", sha256.Sum256(body)) != dig {
			return fmt.Errorf("GET %s: digest mismatch", url)
		}
		return json.Unmarshal(body, v)
	}
	return func(ctx context.Context, img registrytest.Pushed) (map[string]string, error) {
		repo, dig, _ := strings.Cut(strings.TrimPrefix(img.Ref, reg.Host+"/"), "@")
		var m struct {
			Config struct {
				Digest string `json:"digest"`
			} `json:"config"`
		}
		if err := get(ctx, reg.URL+"/v2/"+repo+"/manifests/"+dig, manifestAccept, dig, &m); err != nil {
			return nil, err
		}
		var cfg struct {
			Config struct {
				Labels map[string]string `json:"Labels"`
			} `json:"config"`
		}
		if err := get(ctx, reg.URL+"/v2/"+repo+"/blobs/"+m.Config.Digest, "*/*", m.Config.Digest, &cfg); err != nil {
			return nil, err
		}
		return cfg.Config.Labels, nil
	}
}

// run performs n inspections with benchConcurrency workers, cycling through imgs, and returns how long they
// took.
func run(b *testing.B, inspect inspector, imgs []registrytest.Pushed, n int) time.Duration {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchConcurrency {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				img := imgs[i%int64(len(imgs))]
				labels, err := inspect(ctx, img)
				if err != nil {
					b.Error(err)
					return
				}
				if labels["update_level"] == "" {
					b.Errorf("%s: no update_level label", img.Ref)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkInspectParallel measures inspections at concurrency 16 against a local registry, for the Client
// and for plain net/http making the same two requests, each on its own.
func BenchmarkInspectParallel(b *testing.B) {
	reg := registrytest.New(b)
	imgs := benchImages(b, reg, 200)
	for _, bc := range []struct {
		name string
		make func(*testing.B, *registrytest.Registry, *registry.Counter) inspector
	}{{"client", clientInspector}, {"nethttp", plainInspector}, {"nethttp-verify", verifyingInspector}} {
		b.Run(bc.name, func(b *testing.B) {
			var counter registry.Counter
			inspect := bc.make(b, reg, &counter)
			run(b, inspect, imgs, 2*benchConcurrency) // warm the connections
			counter.Reset()
			b.ResetTimer()
			took := run(b, inspect, imgs, b.N)
			b.ReportMetric(float64(b.N)/took.Seconds(), "inspections/s")
			b.ReportMetric(float64(counter.Snapshot().Total())/float64(b.N), "requests/op")
		})
	}
}

// BenchmarkInspectRatio runs the Client and the net/http baseline side by side, in rounds of 1000 inspections
// at concurrency 16 whose order rotates, and reports both rates and their ratio (the target is ≥ 0.8). It
// also reports the rate of the baseline when it verifies digests as the Client does.
func BenchmarkInspectRatio(b *testing.B) {
	const round = 1000
	reg := registrytest.New(b)
	imgs := benchImages(b, reg, 200)
	var counters [3]registry.Counter
	inspectors := []inspector{
		clientInspector(b, reg, &counters[0]),
		plainInspector(b, reg, &counters[1]),
		verifyingInspector(b, reg, &counters[2]),
	}
	for i, inspect := range inspectors {
		run(b, inspect, imgs, 2*benchConcurrency) // warm the connections
		counters[i].Reset()
	}
	var took [3]time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range inspectors {
			k := (i + j) % len(inspectors)
			took[k] += run(b, inspectors[k], imgs, round)
		}
	}
	n := float64(b.N * round)
	rate := func(i int) float64 { return n / took[i].Seconds() }
	b.ReportMetric(rate(0), "client-inspections/s")
	b.ReportMetric(rate(1), "nethttp-inspections/s")
	b.ReportMetric(rate(2), "nethttp-verify-inspections/s")
	b.ReportMetric(rate(0)/rate(1), "ratio")
	b.ReportMetric(rate(0)/rate(2), "ratio-verify")
	for i := range counters {
		if got := float64(counters[i].Snapshot().Total()) / n; got != 2 {
			b.Errorf("inspector %d made %.2f requests per inspection, want 2", i, got)
		}
	}
}
