package registry

import (
	"net/http"
	"strings"
	"sync/atomic"
)

// Counter counts the HTTP requests that reach the wire, by kind, so that tests and benchmarks can hold the
// client to its request budget, and the blob bytes they carry. Retries after a 429 and regclient's own
// retries are counted: each is a request the registry sees. The zero value is ready; it is safe for
// concurrent use. Pass its Wrap to WithTransport, or wrap any other http.RoundTripper with it.
type Counter struct {
	n                     [numRequestKinds]atomic.Int64
	blobRead, blobWritten atomic.Int64
}

// Counts is a snapshot of a Counter.
type Counts struct {
	ManifestHead int64 // HEAD /v2/<name>/manifests/<reference>
	ManifestGet  int64 // GET /v2/<name>/manifests/<reference>
	ManifestPut  int64 // PUT /v2/<name>/manifests/<reference>
	BlobHead     int64 // HEAD /v2/<name>/blobs/<digest>
	BlobGet      int64 // GET /v2/<name>/blobs/<digest>
	TagList      int64 // GET /v2/<name>/tags/list, each page
	Token        int64 // a token service (a path ending in /token, or a scope or service query)
	Other        int64 // anything else: the /v2/ ping, uploads, referrers, a blob's redirect target
}

// Total is the number of requests of every kind.
func (c Counts) Total() int64 {
	return c.ManifestHead + c.ManifestGet + c.ManifestPut + c.BlobHead + c.BlobGet + c.TagList + c.Token + c.Other
}

// Gets is the number of GET requests for manifests and blobs.
func (c Counts) Gets() int64 { return c.ManifestGet + c.BlobGet }

type requestKind int

const (
	kindManifestHead requestKind = iota
	kindManifestGet
	kindManifestPut
	kindBlobHead
	kindBlobGet
	kindTagList
	kindToken
	kindOther
	numRequestKinds
)

// Wrap returns next, counting each request it sends. A nil next is http.DefaultTransport.
func (c *Counter) Wrap(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return countingTransport{c: c, next: next}
}

// Snapshot returns the counts so far.
func (c *Counter) Snapshot() Counts {
	return Counts{
		ManifestHead: c.n[kindManifestHead].Load(),
		ManifestGet:  c.n[kindManifestGet].Load(),
		ManifestPut:  c.n[kindManifestPut].Load(),
		BlobHead:     c.n[kindBlobHead].Load(),
		BlobGet:      c.n[kindBlobGet].Load(),
		TagList:      c.n[kindTagList].Load(),
		Token:        c.n[kindToken].Load(),
		Other:        c.n[kindOther].Load(),
	}
}

// BlobBytes returns the bytes of blob GET response bodies read so far (a redirect target's included) and
// the bytes of blob upload bodies sent (POST, PATCH, PUT to /blobs/uploads/). Reset sets them to zero too.
func (c *Counter) BlobBytes() (read, written int64) {
	return c.blobRead.Load(), c.blobWritten.Load()
}

// Reset sets every count to zero.
func (c *Counter) Reset() {
	for i := range c.n {
		c.n[i].Store(0)
	}
	c.blobRead.Store(0)
	c.blobWritten.Store(0)
}

type countingTransport struct {
	c    *Counter
	next http.RoundTripper
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.c.n[classifyRequest(req)].Add(1)
	return countBlobBytes(t.next, req, t.c.blobRead.Add, t.c.blobWritten.Add)
}

func classifyRequest(req *http.Request) requestKind {
	p := req.URL.Path
	if strings.HasPrefix(p, "/v2/") {
		switch {
		case strings.HasSuffix(p, "/tags/list") && req.Method == http.MethodGet:
			return kindTagList
		case strings.Contains(p, "/blobs/uploads"):
			return kindOther
		case strings.LastIndex(p, "/manifests/") > len("/v2"):
			switch req.Method {
			case http.MethodHead:
				return kindManifestHead
			case http.MethodGet:
				return kindManifestGet
			case http.MethodPut:
				return kindManifestPut
			}
		case strings.LastIndex(p, "/blobs/") > len("/v2"):
			switch req.Method {
			case http.MethodHead:
				return kindBlobHead
			case http.MethodGet:
				return kindBlobGet
			}
		}
		return kindOther
	}
	q := req.URL.Query()
	if strings.HasSuffix(p, "/token") || q.Has("scope") || q.Has("service") {
		return kindToken
	}
	return kindOther
}
