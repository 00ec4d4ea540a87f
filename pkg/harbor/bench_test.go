package harbor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/harbor"
)

// benchArtifacts is how many artifacts the benchmark's repository holds: ⌈5000/100⌉ = 50 pages.
const benchArtifacts = 5000

// pagedArtifacts serves the artifact list of one repository, Harbor-shaped (HARBOR.md §3.1, §7): pages
// encoded once up front, page_size above 100 refused with 422, X-Total-Count and Link on every page. It
// counts the requests.
//
// The benchmark runs against this server until pkg/harbor/harbortest lands; it then runs against the
// stand-in, whose handler stands where this one does.
type pagedArtifacts struct {
	pages    [][]byte
	requests atomic.Int64
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
	p.requests.Add(1)
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

// BenchmarkListArtifacts lists the 5,000 artifacts of one repository through the client and, side by side in
// the same run (alternating which goes first), by raw net/http paging into a minimal struct. It reports each
// one's time per listing, the client's requests per listing (must be 50) and ratio, the client's throughput
// over the baseline's (target ≥ 0.8).
func BenchmarkListArtifacts(b *testing.B) {
	srv := newPagedArtifacts(benchArtifacts)
	ts := httptest.NewServer(srv)
	b.Cleanup(ts.Close)
	c, err := harbor.New(harbor.Host{Name: ts.URL, Username: "admin", Password: "Harbor12345", PlainHTTP: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	raw := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	b.Cleanup(raw.CloseIdleConnections)
	ctx := context.Background()

	viaClient := func() (time.Duration, int64) {
		before := srv.requests.Load()
		start := time.Now()
		as, err := c.Artifacts(ctx, "wso2", "base/am")
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(as) != benchArtifacts {
			b.Fatalf("client listed %d artifacts, want %d", len(as), benchArtifacts)
		}
		return took, srv.requests.Load() - before
	}
	viaRaw := func() (time.Duration, int64) {
		before := srv.requests.Load()
		start := time.Now()
		as, err := rawList(ctx, raw, ts.URL)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(as) != benchArtifacts {
			b.Fatalf("net/http listed %d artifacts, want %d", len(as), benchArtifacts)
		}
		return took, srv.requests.Load() - before
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
