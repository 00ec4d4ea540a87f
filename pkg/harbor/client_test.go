package harbor_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/go-openapi/runtime"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/artifact"

	"github.com/harborflow/harborflow/pkg/harbor"
)

func TestBaseURLIsNormalised(t *testing.T) {
	for _, tc := range []struct {
		host harbor.Host
		want string
	}{
		{harbor.Host{Name: "harbor.acme.example"}, "https://harbor.acme.example/api/v2.0"},
		{harbor.Host{Name: "harbor.acme.example:8443"}, "https://harbor.acme.example:8443/api/v2.0"},
		{harbor.Host{Name: "https://harbor.acme.example"}, "https://harbor.acme.example/api/v2.0"},
		{harbor.Host{Name: "https://harbor.acme.example/"}, "https://harbor.acme.example/api/v2.0"},
		{harbor.Host{Name: "https://harbor.acme.example/api/v2.0/"}, "https://harbor.acme.example/api/v2.0"},
		{harbor.Host{Name: "https://acme.example/harbor/"}, "https://acme.example/harbor/api/v2.0"},
		{harbor.Host{Name: "localhost:8080", PlainHTTP: true}, "http://localhost:8080/api/v2.0"},
		{harbor.Host{Name: "http://localhost:8080", PlainHTTP: true}, "http://localhost:8080/api/v2.0"},
	} {
		u, err := harbor.BaseURL(tc.host)
		if err != nil || u.String() != tc.want {
			t.Errorf("BaseURL(%+v) = %v, %v; want %s", tc.host, u, err, tc.want)
		}
	}
	for _, h := range []harbor.Host{
		{},
		{Name: "http://harbor.acme.example"}, // http:// without plain_http
		{Name: "https://localhost:8080", PlainHTTP: true}, // https:// with plain_http
		{Name: "https://admin:Harbor12345@harbor.acme.example"},
		{Name: "https://harbor.acme.example/?x=1"},
	} {
		_, err := harbor.BaseURL(h)
		if !errors.Is(err, harbor.ErrInvalidHost) {
			t.Errorf("BaseURL(%+v) = %v, want ErrInvalidHost", h, err)
		}
		if err != nil && strings.Contains(err.Error(), "Harbor12345") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// Repository names are escaped twice (a/b → a%252Fb), tags and digests once (they need none), project names
// are sent with X-Is-Resource-Name (HARBOR.md §3.1).
func TestNamesAreEscapedAsHarborWantsThem(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && (strings.HasSuffix(r.URL.Path, "/artifacts") || strings.HasSuffix(r.URL.Path, "/policies")):
			writeJSON(w, 200, 0, []any{})
		case r.Method == http.MethodGet:
			writeJSON(w, 200, -1, artifactJSON(0))
		case r.Method == http.MethodPost:
			w.Header().Set("Location", r.URL.Path+"/1")
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	c := f.client(t)
	ctx := context.Background()
	const dig = "sha256:2d4e459f4ecb5329407ae3e47cbc107a2fbace221354ca75960af4c047b3cb13"
	steps := []struct {
		call         func() error
		method       string
		path         string
		query        string // a substring of the raw query
		resourceName bool
	}{
		{func() error { _, err := c.Artifacts(ctx, "wso2", "base/am"); return err }, "GET",
			"/api/v2.0/projects/wso2/repositories/base%252Fam/artifacts", "page_size=100", false},
		{func() error { _, err := c.Artifact(ctx, "wso2", "base/am", "4.2.0.15-rocky"); return err }, "GET",
			"/api/v2.0/projects/wso2/repositories/base%252Fam/artifacts/4.2.0.15-rocky", "with_tag=true", false},
		{func() error { _, err := c.Artifact(ctx, "wso2", "a/b/c", dig); return err }, "GET",
			"/api/v2.0/projects/wso2/repositories/a%252Fb%252Fc/artifacts/" + dig, "", false},
		{func() error { return c.DeleteTag(ctx, "wso2", "base/am", dig, "4.2.0_1") }, "DELETE",
			"/api/v2.0/projects/wso2/repositories/base%252Fam/artifacts/" + dig + "/tags/4.2.0_1", "", false},
		{func() error { return c.CopyArtifact(ctx, "wso2-prod", "base/am", "wso2/base/am:4.2.0.15") }, "POST",
			"/api/v2.0/projects/wso2-prod/repositories/base%252Fam/artifacts", "from=wso2%2Fbase%2Fam%3A4.2.0.15", false},
		{func() error { return c.CreateTag(ctx, "wso2", "am", "4.2.0.15", "4.2.0") }, "POST",
			"/api/v2.0/projects/wso2/repositories/am/artifacts/4.2.0.15/tags", "", false},
		{func() error { _, err := c.Project(ctx, "123"); return err }, "GET", "/api/v2.0/projects/123", "", true},
		{func() error { _, err := c.WebhookPolicies(ctx, "123"); return err }, "GET", "/api/v2.0/projects/123/webhook/policies", "", true},
	}
	for i, s := range steps {
		if err := s.call(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		reqs := f.requests()
		r := reqs[len(reqs)-1]
		if r.Method != s.method || r.Path != s.path || !strings.Contains(r.Query, s.query) {
			t.Errorf("step %d: %s %s?%s, want %s %s?…%s…", i, r.Method, r.Path, r.Query, s.method, s.path, s.query)
		}
		if got := r.Header.Get("X-Is-Resource-Name"); s.resourceName && got != "true" {
			t.Errorf("step %d: X-Is-Resource-Name = %q, want true", i, got)
		}
	}
}

// A list returns every item, in pages of 100 following X-Total-Count.
func TestArtifactsFollowPages(t *testing.T) {
	for _, tc := range []struct {
		name      string
		items     int
		sendTotal bool
		total     int // X-Total-Count when not the item count (0: the item count)
		requests  int
	}{
		{"250 items", 250, true, 0, 3},
		{"200 items end when the total is reached", 200, true, 0, 2},
		{"no X-Total-Count: a short page ends the list", 250, false, 0, 3},
		{"empty", 0, true, 0, 1},
		{"an X-Total-Count far beyond what comes does not size the result", 50, true, 5_000_000_000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := make([]map[string]any, tc.items)
			for i := range all {
				all[i] = artifactJSON(i)
			}
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				page, _ := strconv.Atoi(r.URL.Query().Get("page"))
				size, _ := strconv.Atoi(r.URL.Query().Get("page_size"))
				if size > 100 {
					writeError(w, 422, "UNPROCESSABLE_ENTITY", "validation failure list:\npage_size in query should be less than or equal to 100")
					return
				}
				lo, hi := min((page-1)*size, len(all)), min(page*size, len(all))
				total := len(all)
				if tc.total != 0 {
					total = tc.total
				}
				if !tc.sendTotal {
					total = -1
				}
				writeJSON(w, 200, total, all[lo:hi])
			})
			got, err := f.client(t).Artifacts(context.Background(), "wso2", "base/am", harbor.WithQuery("tags=*"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.items {
				t.Fatalf("%d artifacts, want %d", len(got), tc.items)
			}
			for i, a := range got {
				if a.Digest != all[i]["digest"] {
					t.Fatalf("artifact %d is %s, want %s", i, a.Digest, all[i]["digest"])
				}
			}
			reqs := f.requests()
			if len(reqs) != tc.requests {
				t.Fatalf("%d requests, want %d", len(reqs), tc.requests)
			}
			for i, r := range reqs {
				q, _ := url.ParseQuery(r.Query)
				if q.Get("page") != strconv.Itoa(i+1) || q.Get("page_size") != "100" || q.Get("q") != "tags=*" {
					t.Errorf("request %d: %s", i, r.Query)
				}
			}
		})
	}
}

// Every list pages the same way.
func TestEveryListPages(t *testing.T) {
	const n = 150
	item := func(path string, i int) any {
		switch {
		case strings.HasSuffix(path, "/projects"):
			return map[string]any{"project_id": i + 1, "name": fmt.Sprint("p", i), "metadata": map[string]string{"public": "false"}}
		case strings.HasSuffix(path, "/repositories"):
			return map[string]any{"id": i + 1, "name": fmt.Sprint("wso2/r", i)}
		case strings.HasSuffix(path, "/labels"):
			return map[string]any{"id": i + 1, "name": fmt.Sprint("l", i), "scope": "g"}
		case strings.HasSuffix(path, "/accessories"):
			return map[string]any{"id": i + 1, "type": "signature.cosign", "digest": fmt.Sprintf("sha256:%064x", i)}
		case strings.HasSuffix(path, "/policies"):
			return map[string]any{"id": i + 1, "name": fmt.Sprint("w", i), "targets": []any{}}
		case strings.HasSuffix(path, "/immutabletagrules"):
			return map[string]any{"id": i + 1, "action": "immutable", "tag_selectors": []any{}}
		}
		return nil
	}
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		size, _ := strconv.Atoi(r.URL.Query().Get("page_size"))
		var items []any
		for i := (page - 1) * size; i < min(page*size, n); i++ {
			items = append(items, item(r.URL.Path, i))
		}
		writeJSON(w, 200, n, items)
	})
	c := f.client(t)
	ctx := context.Background()
	count := func(n int, err error) (int, error) { return n, err }
	for name, list := range map[string]func() (int, error){
		"projects":        func() (int, error) { l, err := c.Projects(ctx); return count(len(l), err) },
		"repositories":    func() (int, error) { l, err := c.Repositories(ctx, "wso2"); return count(len(l), err) },
		"labels":          func() (int, error) { l, err := c.Labels(ctx, 0); return count(len(l), err) },
		"accessories":     func() (int, error) { l, err := c.Accessories(ctx, "wso2", "am", "4.2.0"); return count(len(l), err) },
		"webhooks":        func() (int, error) { l, err := c.WebhookPolicies(ctx, "wso2"); return count(len(l), err) },
		"immutable rules": func() (int, error) { l, err := c.ImmutableRules(ctx, "wso2"); return count(len(l), err) },
	} {
		before := len(f.requests())
		got, err := list()
		if err != nil || got != n {
			t.Errorf("%s: %d, %v; want %d", name, got, err, n)
		}
		if reqs := len(f.requests()) - before; reqs != 2 {
			t.Errorf("%s: %d requests, want 2", name, reqs)
		}
	}
}

// Every status Harbor answers maps to its sentinel, whether go-client declares it for the operation (a
// typed error with the body decoded) or not (*runtime.APIError without it), and the message is Harbor's.
func TestErrorsMapToSentinels(t *testing.T) {
	const message = "harbor says why"
	for _, tc := range []struct {
		name     string
		status   int
		code     string
		want     error
		declared bool
		call     func(context.Context, *harbor.Client) error
	}{
		{"400 declared (copy)", 400, "BAD_REQUEST", harbor.ErrBadRequest, true, copyArtifact},
		{"400 undeclared (delete tag)", 400, "BAD_REQUEST", harbor.ErrBadRequest, false, deleteTag},
		{"401 declared (list artifacts)", 401, "UNAUTHORIZED", harbor.ErrUnauthorized, true, listArtifacts},
		{"401 declared (get project)", 401, "UNAUTHORIZED", harbor.ErrUnauthorized, true, getProject},
		{"403 declared (list artifacts)", 403, "FORBIDDEN", harbor.ErrForbidden, true, listArtifacts},
		{"403 undeclared (get project)", 403, "FORBIDDEN", harbor.ErrForbidden, false, getProject},
		{"404 declared (get artifact)", 404, "NOT_FOUND", harbor.ErrNotFound, true, getArtifact},
		{"404 undeclared (get project)", 404, "NOT_FOUND", harbor.ErrNotFound, false, getProject},
		{"409 declared (create tag)", 409, "CONFLICT", harbor.ErrConflict, true, createTag},
		{"409 undeclared (copy)", 409, "CONFLICT", harbor.ErrConflict, false, copyArtifact},
		{"412 declared (delete project)", 412, "PRECONDITION", harbor.ErrPrecondition, true, deleteProject},
		{"412 undeclared (delete tag)", 412, "PRECONDITION", harbor.ErrPrecondition, false, deleteTag},
		{"412 undeclared (copy)", 412, "PRECONDITION", harbor.ErrPrecondition, false, copyArtifact},
		{"412 undeclared (delete artifact)", 412, "PRECONDITION", harbor.ErrPrecondition, false, deleteArtifact},
		{"422 declared (scan)", 422, "UNPROCESSABLE_ENTITY", harbor.ErrUnprocessable, true, scanArtifact},
		{"422 undeclared (list artifacts)", 422, "UNPROCESSABLE_ENTITY", harbor.ErrUnprocessable, false, listArtifacts},
		{"429 undeclared (list artifacts)", 429, "TOO_MANY_REQUEST", harbor.ErrRateLimited, false, listArtifacts},
		{"405 declared (copy)", 405, "METHOD_NOT_ALLOWED", harbor.ErrMethodNotAllowed, true, copyArtifact},
		{"500 declared (list artifacts)", 500, "UNKNOWN", harbor.ErrUnavailable, true, listArtifacts},
		{"503 undeclared (list artifacts)", 503, "", harbor.ErrUnavailable, false, listArtifacts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "7")
				if tc.code == "" {
					w.Header().Set("Content-Type", "text/plain")
					w.WriteHeader(tc.status)
					fmt.Fprint(w, message)
					return
				}
				writeError(w, tc.status, tc.code, message)
			})
			ctx := harbor.ContextWithRequestID(context.Background(), "req-1")
			err := tc.call(ctx, f.client(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var he *harbor.Error
			if !errors.As(err, &he) || he.Status != tc.status || he.Code != tc.code || he.RequestID != "req-1" {
				t.Fatalf("err = %#v", he)
			}
			if tc.code != "" && he.Message != message {
				t.Errorf("Message = %q, want Harbor's %q", he.Message, message)
			}
			var apiErr *runtime.APIError
			if undeclared := errors.As(err, &apiErr); undeclared == tc.declared {
				t.Errorf("runtime.APIError in the chain: %t, want %t: the case does not test what it says", undeclared, !tc.declared)
			}
			msg := err.Error()
			if tc.code != "" && !strings.Contains(msg, message) {
				t.Errorf("message %q lacks Harbor's %q", msg, message)
			}
			if n := strings.Count(msg, "wso2"); n != 1 {
				t.Errorf("message %q names the project %d times, want once", msg, n)
			}
			if strings.Contains(msg, "0x") || strings.Contains(msg, "&{") {
				t.Errorf("message %q prints pointers", msg)
			}
			if tc.status == 429 && he.RetryAfter.Seconds() != 7 {
				t.Errorf("RetryAfter = %s, want 7s", he.RetryAfter)
			}
			if got := harbor.Retryable(err); got != (tc.status == 429 || tc.status >= 500) {
				t.Errorf("Retryable = %t", got)
			}
		})
	}
}

func listArtifacts(ctx context.Context, c *harbor.Client) error {
	_, err := c.Artifacts(ctx, "wso2", "base/am")
	return err
}

func getArtifact(ctx context.Context, c *harbor.Client) error {
	_, err := c.Artifact(ctx, "wso2", "base/am", "4.2.0")
	return err
}

func getProject(ctx context.Context, c *harbor.Client) error {
	_, err := c.Project(ctx, "wso2")
	return err
}

func copyArtifact(ctx context.Context, c *harbor.Client) error {
	return c.CopyArtifact(ctx, "wso2", "base/am", "dev/base/am:4.2.0")
}

func createTag(ctx context.Context, c *harbor.Client) error {
	return c.CreateTag(ctx, "wso2", "base/am", "4.2.0.15", "4.2.0")
}

func deleteTag(ctx context.Context, c *harbor.Client) error {
	return c.DeleteTag(ctx, "wso2", "base/am", "4.2.0.15", "4.2.0")
}

func deleteArtifact(ctx context.Context, c *harbor.Client) error {
	return c.DeleteArtifact(ctx, "wso2", "base/am", "4.2.0.15")
}

func deleteProject(ctx context.Context, c *harbor.Client) error { return c.DeleteProject(ctx, "wso2") }

func scanArtifact(ctx context.Context, c *harbor.Client) error {
	return c.ScanArtifact(ctx, "wso2", "base/am", "4.2.0.15")
}

// The typed errors the table relies on really are go-client's declared responses.
var _ = []error{&artifact.GetArtifactNotFound{}, &artifact.CreateTagConflict{}}

// TLS is verified: a self-signed Harbor fails without its CA, works with it in ca_file, and works without
// verification only when insecure is asked for (go-client's NewClientSet never verifies, HARBOR.md §4.1).
func TestTLSIsVerified(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, 0, []any{})
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes that fail on purpose
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	list := func(h harbor.Host) error {
		c, err := harbor.New(h)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Projects(ctx)
		return err
	}
	host := harbor.Host{Name: srv.URL, Username: "admin", Password: "Harbor12345"}
	if err := list(host); !errors.Is(err, harbor.ErrTLS) {
		t.Errorf("without ca_file: %v, want ErrTLS", err)
	} else if harbor.Retryable(err) {
		t.Errorf("a TLS failure is retryable: %v", err)
	}
	withCA := host
	withCA.CAFile = caFile
	if err := list(withCA); err != nil {
		t.Errorf("with ca_file: %v", err)
	}
	insecure := host
	insecure.Insecure = true
	if err := list(insecure); err != nil {
		t.Errorf("insecure: %v", err)
	}
	missing := host
	missing.CAFile = filepath.Join(t.TempDir(), "none.pem")
	if _, err := harbor.New(missing); err == nil {
		t.Error("a missing ca_file was accepted")
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// Every request carries X-Request-Id (the context's, or a new one per request) and harborflow's User-Agent.
func TestEveryRequestCarriesRequestIDAndUserAgent(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			w.Header().Set("Location", r.URL.Path+"/5")
			w.WriteHeader(http.StatusCreated)
		case strings.HasSuffix(r.URL.Path, "/projects/wso2"):
			writeJSON(w, 200, -1, map[string]any{"project_id": 1, "name": "wso2"})
		case r.Method == http.MethodGet:
			page, _ := strconv.Atoi(r.URL.Query().Get("page"))
			items := []any{}
			if page == 1 {
				for i := range 100 {
					items = append(items, artifactJSON(i))
				}
			}
			writeJSON(w, 200, 150, items)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	c := f.client(t, harbor.WithVersion("1.2.3"))
	ctx := context.Background()
	_, _ = c.Artifacts(ctx, "wso2", "am") // 2 pages (the second one empty ends it)
	_, _ = c.Project(ctx, "wso2")
	_ = c.DeleteArtifact(ctx, "wso2", "am", "4.2.0")
	_, _ = c.CreateWebhookPolicy(ctx, "wso2", harbor.WebhookPolicy{Name: "harborflow"})
	_ = c.CopyArtifact(harbor.ContextWithRequestID(ctx, "copy-1"), "wso2", "am", "dev/am:1")
	reqs := f.requests()
	if len(reqs) != 6 {
		t.Fatalf("%d requests, want 6", len(reqs))
	}
	seen := map[string]bool{}
	for i, r := range reqs[:5] {
		id := r.Header.Get("X-Request-Id")
		if !uuidRE.MatchString(id) || seen[id] {
			t.Errorf("request %d (%s %s): X-Request-Id %q is not a new UUID", i, r.Method, r.Path, id)
		}
		seen[id] = true
	}
	if id := reqs[5].Header.Get("X-Request-Id"); id != "copy-1" {
		t.Errorf("X-Request-Id = %q, want the context's copy-1", id)
	}
	for i, r := range reqs {
		if ua := r.Header.Get("User-Agent"); ua != "harborflow/1.2.3" {
			t.Errorf("request %d: User-Agent %q", i, ua)
		}
		if user, pass, ok := (&http.Request{Header: r.Header}).BasicAuth(); !ok || user != "admin" || pass != "Harbor12345" {
			t.Errorf("request %d: no basic auth", i)
		}
	}
}

// The password never appears in an error or a printed value, whatever fails.
func TestSecretsNeverInErrors(t *testing.T) {
	const password = "s3cr3t-robot-password"
	const auth = "Bearer webhook-s3cr3t"
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, 401, "UNAUTHORIZED", "unauthorized")
	})
	h := harbor.Host{Name: f.URL, Username: "robot$harborflow", Password: password, PlainHTTP: true}
	c, err := harbor.New(h)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var errs []error
	_, err = c.Projects(ctx)
	errs = append(errs, err)
	_, err = c.CreateWebhookPolicy(ctx, "wso2", harbor.WebhookPolicy{Name: "harborflow",
		Targets: []harbor.WebhookTarget{{Address: "https://hooks.acme.example/harbor", AuthHeader: auth}}})
	errs = append(errs, err)
	refused := h
	refused.Name = "127.0.0.1:1"
	rc, err := harbor.New(refused)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rc.Projects(ctx)
	errs = append(errs, err)
	_, err = harbor.New(harbor.Host{Name: "https://robot:" + password + "@harbor.acme.example"})
	errs = append(errs, err)
	var out []string
	for _, err := range errs {
		if err == nil {
			t.Fatal("a call that had to fail did not")
		}
		out = append(out, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	}
	pol := harbor.WebhookPolicy{Targets: []harbor.WebhookTarget{{AuthHeader: auth}}}
	j, _ := json.Marshal(pol)
	out = append(out, fmt.Sprintf("%v %+v %#v", h, h, h), fmt.Sprintf("%v %+v %#v", c, c, c),
		fmt.Sprintf("%v %+v %#v", pol, pol, pol), string(j))
	for _, o := range out {
		if strings.Contains(o, password) || strings.Contains(o, "webhook-s3cr3t") {
			t.Errorf("a secret was printed: %s", o)
		}
	}
}
