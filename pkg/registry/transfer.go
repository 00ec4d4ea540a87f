package registry

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// Blob byte accounting. The transports are shared by every call of a Client, so a write counts its own
// bytes in a transfer carried by its context; transferTransport, the wire-side end of the transport chain,
// adds to it. Counted are the bytes a blob GET's response body delivered (also after a redirect to a storage
// URL) and the bytes of an upload's request body (POST, PATCH or PUT to /blobs/uploads/) as they are sent,
// so that a mount, a blob the registry already has and an error answer count nothing, and a resent body
// counts again.

// transferKey is the context key of a call's *transfer.
type transferKey struct{}

// transfer is what one call has moved.
type transfer struct {
	read, written atomic.Int64
}

// withTransfer returns ctx carrying a new transfer.
func withTransfer(ctx context.Context) (context.Context, *transfer) {
	t := &transfer{}
	return context.WithValue(ctx, transferKey{}, t), t
}

// transferTransport counts blob bytes into the transfer of the request's context, if it has one.
type transferTransport struct {
	next http.RoundTripper
}

func (t transferTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tr, ok := req.Context().Value(transferKey{}).(*transfer)
	if !ok {
		return t.next.RoundTrip(req)
	}
	return countBlobBytes(t.next, req, tr.read.Add, tr.written.Add)
}

// countBlobBytes sends req with next, calling read with the bytes of a blob GET's response body as they are
// read, and written with the bytes of an upload's request body as they are sent.
func countBlobBytes(next http.RoundTripper, req *http.Request, read, written func(int64) int64) (*http.Response, error) {
	if isBlobUpload(req) && req.Body != nil && req.Body != http.NoBody {
		orig := req
		req = req.Clone(req.Context())
		req.Body = &countingBody{ReadCloser: orig.Body, add: written}
		if orig.GetBody != nil {
			req.GetBody = func() (io.ReadCloser, error) {
				b, err := orig.GetBody()
				if err != nil {
					return nil, err
				}
				return &countingBody{ReadCloser: b, add: written}, nil
			}
		}
	}
	resp, err := next.RoundTrip(req)
	if err != nil || resp.StatusCode < 200 || resp.StatusCode > 299 || !isBlobGet(req) {
		return resp, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, add: read}
	return resp, nil
}

// isBlobGet reports whether req is a GET of /v2/<name>/blobs/<digest>, or a redirect followed from one.
func isBlobGet(req *http.Request) bool {
	if req.Method != http.MethodGet {
		return false
	}
	if req.Response != nil && req.Response.Request != nil {
		return isBlobGet(req.Response.Request)
	}
	p := req.URL.Path
	return strings.HasPrefix(p, "/v2/") && strings.LastIndex(p, "/blobs/") > len("/v2") &&
		!strings.Contains(p, "/blobs/uploads")
}

// isBlobUpload reports whether req sends blob content: POST, PATCH or PUT to /v2/<name>/blobs/uploads/.
func isBlobUpload(req *http.Request) bool {
	switch req.Method {
	case http.MethodPost, http.MethodPatch, http.MethodPut:
		return strings.HasPrefix(req.URL.Path, "/v2/") && strings.Contains(req.URL.Path, "/blobs/uploads")
	}
	return false
}

// countingBody passes the bytes read through it to add.
type countingBody struct {
	io.ReadCloser
	add func(int64) int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.add(int64(n))
	}
	return n, err
}
