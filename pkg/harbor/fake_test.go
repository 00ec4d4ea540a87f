package harbor_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/harborflow/harborflow/pkg/harbor"
)

// request is what a fake Harbor saw of one request.
type request struct {
	Method, Path, Query string // Path as sent on the wire (escaped)
	Header              http.Header
	Body                string
}

// fakeHarbor is an httptest server answering Harbor-shaped responses from a handler the test gives; it records
// every request. The stand-in (harbortest) is the faithful Harbor; this is for the client's own edges.
type fakeHarbor struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
}

func newFake(t testing.TB, h http.HandlerFunc) *fakeHarbor {
	t.Helper()
	f := &fakeHarbor{}
	f.Server = httptest.NewServer(f.record(h))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeHarbor) record(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)})
		f.mu.Unlock()
		h(w, r)
	}
}

func (f *fakeHarbor) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// client is a Client of the fake, as admin.
func (f *fakeHarbor) client(t testing.TB, opts ...harbor.Opt) *harbor.Client {
	t.Helper()
	c, err := harbor.New(harbor.Host{Name: f.URL, Username: "admin", Password: "Harbor12345", PlainHTTP: true}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// writeJSON answers as Harbor does: application/json, with X-Total-Count when total ≥ 0.
func writeJSON(w http.ResponseWriter, status int, total int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if total >= 0 {
		w.Header().Set("X-Total-Count", strconv.Itoa(total))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers Harbor's error body (HARBOR.md §3.1).
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, message)
}

// artifactJSON is a Harbor-shaped artifact (HARBOR.md §3.2, §7): a single-platform image with one tag and
// its config labels in extra_attrs.
func artifactJSON(i int) map[string]any {
	dig := fmt.Sprintf("sha256:%064x", i+1)
	return map[string]any{
		"id": i + 1, "project_id": 2, "repository_id": 3, "repository_name": "wso2/base/am",
		"digest": dig, "type": "IMAGE", "media_type": "application/vnd.oci.image.config.v1+json",
		"manifest_media_type": "application/vnd.oci.image.manifest.v1+json", "size": 123456789,
		"push_time": "2026-11-22T23:53:49.674Z", "pull_time": "0001-01-01T00:00:00.000Z",
		"icon": "sha256:0048162a053eef4d4ce3fe7518615bef084403614f8bca43b40ae2e762e11e06",
		"tags": []map[string]any{{"id": i + 1, "artifact_id": i + 1, "repository_id": 3, "name": fmt.Sprintf("4.2.0.%d", i),
			"push_time": "2026-11-22T23:53:49.674Z", "pull_time": "0001-01-01T00:00:00.000Z", "immutable": false}},
		"labels": nil, "accessories": nil, "references": nil,
		"addition_links": map[string]any{
			"build_history":   map[string]any{"absolute": false, "href": "/api/v2.0/projects/wso2/repositories/base%252Fam/artifacts/" + dig + "/additions/build_history"},
			"vulnerabilities": map[string]any{"absolute": false, "href": "/api/v2.0/projects/wso2/repositories/base%252Fam/artifacts/" + dig + "/additions/vulnerabilities"},
		},
		"extra_attrs": map[string]any{
			"architecture": "amd64", "os": "linux", "author": "WSO2", "created": "2026-11-20T10:00:00Z",
			"config": map[string]any{
				"User": "wso2carbon", "WorkingDir": "/home/wso2carbon",
				"Env":          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "JAVA_HOME=/opt/java/openjdk"},
				"Entrypoint":   []string{"/home/wso2carbon/docker-entrypoint.sh"},
				"ExposedPorts": map[string]any{"9443/tcp": map[string]any{}, "8243/tcp": map[string]any{}},
				"Labels":       map[string]string{"update_level": strconv.Itoa(i), "com.wso2.docker.source": "https://github.com/wso2/docker-apim"},
			},
		},
	}
}
