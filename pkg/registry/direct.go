package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/mediatype"
	"github.com/regclient/regclient/types/ref"
)

// Direct reads.
//
// An inspection is two GETs of content-addressed things, a manifest and a config blob, whose answers the
// client verifies against their digests. For those two, regclient's request machinery (a state machine per
// request, header copies, a decode of the whole manifest into its own types) costs about as much CPU as
// net/http itself, which held inspections at concurrency 16 to ~0.75 of plain net/http. So the client sends
// them itself, through the same transports regclient uses (User-Agent and Retry-After, the WithTransport
// wrappers, TLS per host), with the Authorization header regclient last used
// successfully for the repository. regclient keeps everything else: credentials and token exchanges, tags,
// HEADs, writes. A direct read that gets an answer other than a 200 with the expected content hands the request
// back to regclient, which then does it its own way (and so also learns, or renews, the repository's
// authorization). A direct read that gets no answer at all (no connection, a timeout, a cancelled context) or a
// 5xx fails the call: sending it again through regclient would be a retry (see "Retries" in doc.go).
// Until regclient has once read from a repository, direct reads of it are not tried.
type direct struct {
	hc    *http.Client
	plain map[string]bool // hosts reached over http://

	mu   sync.Mutex
	auth map[string]string // registry/repository → Authorization ("" reads anonymously)
}

func newDirect(rt http.RoundTripper, regs []Host) *direct {
	d := &direct{hc: &http.Client{Transport: rt}, plain: map[string]bool{}, auth: map[string]string{}}
	for _, r := range regs {
		d.plain[r.Name] = r.PlainHTTP
	}
	return d
}

// directManifestAccept are the manifests a direct read accepts: Docker schema 1 and anything else is left
// to regclient.
var directManifestAccept = strings.Join([]string{
	mediatype.OCI1ManifestList, mediatype.OCI1Manifest, mediatype.Docker2ManifestList, mediatype.Docker2Manifest,
}, ", ")

// manifest reads r's manifest (r has a digest) directly; ok is false when the caller must ask regclient, and
// err is set when the registry could not be reached.
func (d *direct) manifest(ctx context.Context, r ref.Ref) (*cachedManifest, bool, error) {
	body, contentType, ok, err := d.get(ctx, r, "manifests", r.Digest, directManifestAccept, maxManifestSize)
	if !ok {
		return nil, false, err
	}
	cm := &cachedManifest{desc: Descriptor{Digest: r.Digest, Size: int64(len(body))}, raw: body}
	if err := json.Unmarshal(body, &cm.m); err != nil {
		return nil, false, nil
	}
	cm.desc.MediaType = cm.m.MediaType
	if cm.desc.MediaType == "" {
		cm.desc.MediaType, _, _ = strings.Cut(contentType, ";")
	}
	switch cm.desc.MediaType {
	case mediatype.OCI1ManifestList, mediatype.OCI1Manifest, mediatype.Docker2ManifestList, mediatype.Docker2Manifest:
		return cm, true, nil
	}
	return nil, false, nil
}

// blob reads the blob desc names from r's repository directly, verified against its digest and size; ok is
// false when the caller must ask regclient, and err is set when the registry could not be reached.
func (d *direct) blob(ctx context.Context, r ref.Ref, desc descJSON, limit int64) ([]byte, bool, error) {
	body, _, ok, err := d.get(ctx, r, "blobs", desc.Digest, "*/*", limit)
	if !ok || desc.Size > 0 && int64(len(body)) != desc.Size {
		return nil, false, err
	}
	return body, true, nil
}

// get GETs /v2/<repository>/<kind>/<dig> and returns the body when the registry answered 200 with content
// of that digest. err is the failure of a request that got no answer, which asking regclient would repeat.
func (d *direct) get(ctx context.Context, r ref.Ref, kind, dig, accept string, limit int64) ([]byte, string, bool, error) {
	auth, known := d.authorization(r)
	if !known {
		return nil, "", false, nil
	}
	want, err := digest.Parse(dig)
	if err != nil {
		return nil, "", false, nil
	}
	scheme := "https://"
	if d.plain[r.Registry] {
		scheme = "http://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+r.Registry+"/v2/"+r.Repository+"/"+kind+"/"+dig, nil)
	if err != nil {
		return nil, "", false, nil
	}
	req.Header["Accept"] = []string{accept}
	if auth != "" {
		req.Header["Authorization"] = []string{auth}
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, "", false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			d.forget(r.Registry + "/" + r.Repository)
		}
		drain(resp)
		if resp.StatusCode >= 500 {
			// regclient would get the same answer: asking it would be a retry the caller already makes.
			return nil, "", false, &kindError{kind: ErrUnavailable,
				err: fmt.Errorf("%s %s: %s", req.Method, req.URL.Redacted(), resp.Status)}
		}
		return nil, "", false, nil
	}
	n := resp.ContentLength
	if n < 0 || n > limit {
		n = bytes.MinRead
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1)); err != nil || int64(buf.Len()) > limit {
		return nil, "", false, ctx.Err() // a body cut off by the caller's cancellation is not read again
	}
	if want.Algorithm().FromBytes(buf.Bytes()) != want {
		return nil, "", false, nil
	}
	return buf.Bytes(), resp.Header.Get("Content-Type"), true, nil
}

func (d *direct) authorization(r ref.Ref) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	auth, ok := d.auth[r.Registry+"/"+r.Repository]
	return auth, ok
}

func (d *direct) remember(repository, auth string) {
	d.mu.Lock()
	if old, ok := d.auth[repository]; !ok || old != auth {
		d.auth[repository] = auth
	}
	d.mu.Unlock()
}

func (d *direct) forget(repository string) {
	d.mu.Lock()
	delete(d.auth, repository)
	d.mu.Unlock()
}

// authRecorder sits between regclient and the transports and records, per repository, the Authorization
// header of regclient's successful manifest and blob reads (none: the repository reads anonymously), and
// forgets it when the registry refuses it.
type authRecorder struct {
	next   http.RoundTripper
	direct *direct
}

func (t authRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet && req.Method != http.MethodHead {
		return resp, err
	}
	repo, ok := contentRepository(req.URL.Path)
	if !ok {
		return resp, nil
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		t.direct.remember(req.URL.Host+"/"+repo, req.Header.Get("Authorization"))
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		t.direct.forget(req.URL.Host + "/" + repo)
	}
	return resp, nil
}

// contentRepository returns the repository of /v2/<repository>/manifests/<ref> and /v2/<repository>/blobs/<digest>.
func contentRepository(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", false
	}
	for _, sep := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, sep); i > 0 && !strings.Contains(rest[i+len(sep):], "/") {
			return rest[:i], true
		}
	}
	return "", false
}
