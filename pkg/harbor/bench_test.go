package harbor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
)

// benchArtifacts is how many artifacts the benchmark's repository holds: ⌈5000/100⌉ = 50 pages.
const benchArtifacts = 5000

// pagedArtifacts serves the artifact list of one repository, Harbor-shaped (HARBOR.md §3.1, §7): pages
// encoded once up front, page_size above 100 refused with 422, X-Total-Count and Link on every page.
//
// Beside the stand-in, this is the strict case: a server that spends nothing per request, so the figure is
// almost purely what the client costs to decode.
type pagedArtifacts struct {
	pages [][]byte
}

func newPagedArtifacts(n int) *pagedArtifacts {
	p := &pagedArtifacts{}
	for lo := 0; lo < n; lo += harbor.PageSize {
		page := make([]map[string]any, 0, harbor.PageSize)
		for i := lo; i < min(lo+harbor.PageSize, n); i++ {
			page = append(page, artifactJSON(i))
		}
		b, err := json.Marshal(page)
		if err != nil {
			panic(err)
		}
		p.pages = append(p.pages, b)
	}
	return p
}

func (p *pagedArtifacts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	size, _ := strconv.Atoi(q.Get("page_size"))
	if size > harbor.PageSize || size < 1 || page < 1 {
		writeError(w, http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY", "validation failure")
		return
	}
	if size != harbor.PageSize {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "this server serves pages of 100 only")
		return
	}
	body := []byte("[]")
	if page <= len(p.pages) {
		body = p.pages[page-1]
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Total-Count", strconv.Itoa(benchArtifacts))
	h.Set("X-Request-Id", r.Header.Get("X-Request-Id"))
	if page < len(p.pages) {
		h.Set("Link", fmt.Sprintf(`<%s?page=%d&page_size=%d>; rel="next"`, r.URL.Path, page+1, size))
	}
	_, _ = w.Write(body)
}

// rawArtifact is the least a caller reads of an artifact.
type rawArtifact struct {
	Digest string `json:"digest"`
	Tags   []struct {
		Name string `json:"name"`
	} `json:"tags"`
}

// rawList pages the same endpoint with net/http, as a caller without the client would, and collects every
// item as the client does: the baseline.
func rawList(ctx context.Context, hc *http.Client, base string) ([]rawArtifact, error) {
	var all []rawArtifact
	for page := 1; ; page++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("%s/api/v2.0/projects/wso2/repositories/base%%252Fam/artifacts?page=%d&page_size=100&with_tag=true", base, page), nil)
		if err != nil {
			return nil, err
		}
		req.SetBasicAuth("admin", "Harbor12345")
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		var items []rawArtifact
		err = json.NewDecoder(resp.Body).Decode(&items)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		total, _ := strconv.Atoi(resp.Header.Get("X-Total-Count"))
		if all == nil {
			all = make([]rawArtifact, 0, total)
		}
		all = append(all, items...)
		if len(items) < 100 || len(all) >= total {
			return all, nil
		}
	}
}

// countingTransport counts the requests that go through it.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// seededStandIn is a Harbor stand-in whose project wso2 holds benchArtifacts images in repository base/am,
// each pushed through its registry front as a client pushes (one config and one layer blob shared, a
// manifest each). It is made once per test binary: the pushes take seconds.
var seededStandIn = sync.OnceValues(func() (*harbortest.Server, error) {
	s, err := harbortest.Start(context.Background(), "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hc := &http.Client{}
	do := func(method, path, contentType string, body []byte) (*http.Response, error) {
		req, err := http.NewRequest(method, s.URL()+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.SetBasicAuth(harbortest.DefaultAdmin, harbortest.DefaultPassword)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return resp, nil
	}
	if _, err := do(http.MethodPost, "/api/v2.0/projects", "application/json", []byte(`{"project_name":"wso2","metadata":{"public":"false"}}`)); err != nil {
		return nil, err
	}
	config := []byte(`{"architecture":"amd64","os":"linux","config":{"Labels":{"update_level":"15"}},"rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := []byte("layer")
	for _, blob := range [][]byte{config, layer} {
		dig := "sha256:" + fmt.Sprintf("%x", sha256.Sum256(blob))
		resp, err := do(http.MethodPost, "/v2/wso2/base/am/blobs/uploads/", "", nil)
		if err != nil {
			return nil, err
		}
		loc, err := resp.Location()
		if err != nil {
			return nil, err
		}
		q := loc.Query()
		q.Set("digest", dig)
		loc.RawQuery = q.Encode()
		if _, err := do(http.MethodPut, loc.RequestURI(), "application/octet-stream", blob); err != nil {
			return nil, err
		}
	}
	desc := func(mt string, b []byte) string {
		return fmt.Sprintf(`{"mediaType":%q,"digest":"sha256:%x","size":%d}`, mt, sha256.Sum256(b), len(b))
	}
	for i := range benchArtifacts {
		manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s],"annotations":{"n":"%d"}}`,
			desc("application/vnd.oci.image.config.v1+json", config), desc("application/vnd.oci.image.layer.v1.tar", layer), i)
		if _, err := do(http.MethodPut, fmt.Sprintf("/v2/wso2/base/am/manifests/4.2.0.%d", i), "application/vnd.oci.image.manifest.v1+json", []byte(manifest)); err != nil {
			return nil, err
		}
	}
	return s, nil
})

// BenchmarkListArtifacts lists the 5,000 artifacts of one repository through the client and, side by side in
// the same run (alternating which goes first), by raw net/http paging into a minimal struct: against the
// Harbor stand-in (the figure), and against a server that encodes its pages once (strict: nearly all
// of the time is the client's). It reports each one's time per listing, the client's requests per listing
// (must be 50) and ratio, the client's throughput over the baseline's (target ≥ 0.8).
func BenchmarkListArtifacts(b *testing.B) {
	b.Run("standin", func(b *testing.B) {
		s, err := seededStandIn()
		if err != nil {
			b.Fatal(err)
		}
		benchListArtifacts(b, s.URL())
	})
	b.Run("encoded-once", func(b *testing.B) {
		ts := httptest.NewServer(newPagedArtifacts(benchArtifacts))
		b.Cleanup(ts.Close)
		benchListArtifacts(b, ts.URL)
	})
}

func benchListArtifacts(b *testing.B, base string) {
	clientCount := &countingTransport{}
	c, err := harbor.New(harbor.Host{Name: base, Username: "admin", Password: "Harbor12345", PlainHTTP: true},
		harbor.WithTransport(func(next http.RoundTripper) http.RoundTripper { clientCount.next = next; return clientCount }))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	rawCount := &countingTransport{next: http.DefaultTransport.(*http.Transport).Clone()}
	raw := &http.Client{Transport: rawCount}
	b.Cleanup(raw.CloseIdleConnections)
	ctx := context.Background()

	viaClient := func() (time.Duration, int64) {
		before := clientCount.n.Load()
		start := time.Now()
		as, err := c.Artifacts(ctx, "wso2", "base/am")
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(as) != benchArtifacts {
			b.Fatalf("client listed %d artifacts, want %d", len(as), benchArtifacts)
		}
		return took, clientCount.n.Load() - before
	}
	viaRaw := func() (time.Duration, int64) {
		before := rawCount.n.Load()
		start := time.Now()
		as, err := rawList(ctx, raw, base)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(as) != benchArtifacts {
			b.Fatalf("net/http listed %d artifacts, want %d", len(as), benchArtifacts)
		}
		return took, rawCount.n.Load() - before
	}
	viaClient() // warm the connections
	viaRaw()

	var clientTook, rawTook time.Duration
	var clientReqs, rawReqs int64
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			d, n := viaClient()
			clientTook, clientReqs = clientTook+d, clientReqs+n
			d, n = viaRaw()
			rawTook, rawReqs = rawTook+d, rawReqs+n
		} else {
			d, n := viaRaw()
			rawTook, rawReqs = rawTook+d, rawReqs+n
			d, n = viaClient()
			clientTook, clientReqs = clientTook+d, clientReqs+n
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(clientTook.Nanoseconds())/n, "client-ns/list")
	b.ReportMetric(float64(rawTook.Nanoseconds())/n, "nethttp-ns/list")
	b.ReportMetric(float64(clientReqs)/n, "requests/list")
	b.ReportMetric(float64(rawReqs)/n, "nethttp-requests/list")
	b.ReportMetric(rawTook.Seconds()/clientTook.Seconds(), "ratio")
	if want := int64((benchArtifacts + harbor.PageSize - 1) / harbor.PageSize); clientReqs != want*int64(b.N) {
		b.Errorf("the client made %.1f requests per listing, want %d", float64(clientReqs)/n, want)
	}
}
