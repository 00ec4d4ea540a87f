package harbor_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regclient/regclient"
	rcconfig "github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme/reg"
	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
	"github.com/harborflow/harborflow/pkg/secret"
)

// TestContract runs the same assertions against the stand-in (always) and a real Harbor (when HARBOR_URL,
// HARBOR_USERNAME and HARBOR_PASSWORD are set; HARBOR_INSECURE=true and HARBOR_CA_FILE for its TLS). The
// assertions are HARBOR.md's: where the stand-in and HARBOR.md disagree, HARBOR.md wins (§7 is what a real
// Harbor 2.13.5 did).
//
// Webhook deliveries are read the same way for both targets: a local receiver records every POST. A real
// Harbor must reach it: it listens on HARBOR_WEBHOOK_LISTEN (host:port) and Harbor is told
// HARBOR_WEBHOOK_URL (http://host:port as Harbor's jobservice reaches it).
func TestContract(t *testing.T) {
	t.Run("standin", func(t *testing.T) {
		// The receiver first, so that it stops after the stand-in: the cleanup's deletes still deliver.
		rx := newHookReceiver(t, "127.0.0.1:0", "")
		s := harbortest.New(t)
		user, pass := s.Admin()
		slowScans := func(t *testing.T) *target {
			s := harbortest.New(t, harbortest.WithScanDelay(time.Hour))
			user, pass := s.Admin()
			slow := &target{url: s.URL(), host: s.Host(), user: user, pass: pass, plainHTTP: true, wait: 10 * time.Second}
			slow.connect(t)
			return slow
		}
		runContract(t, &target{url: s.URL(), host: s.Host(), user: user, pass: pass, plainHTTP: true, hooks: rx,
			wait: 10 * time.Second, slowScans: slowScans})
	})
	t.Run("harbor", func(t *testing.T) {
		tg, why := realTarget(t)
		if tg == nil {
			t.Skip(why)
		}
		runContract(t, tg)
	})
}

// realTarget is the Harbor the environment names, or nil and why not.
func realTarget(t *testing.T) (*target, string) {
	var missing []string
	for _, k := range []string{"HARBOR_URL", "HARBOR_USERNAME", "HARBOR_PASSWORD"} {
		if os.Getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, "no real Harbor: " + strings.Join(missing, ", ") + " not set"
	}
	raw := strings.TrimRight(os.Getenv("HARBOR_URL"), "/")
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		t.Fatalf("HARBOR_URL %q: want http(s)://host[:port]", raw)
	}
	tg := &target{real: true, url: u.Scheme + "://" + u.Host, host: u.Host,
		user: os.Getenv("HARBOR_USERNAME"), pass: os.Getenv("HARBOR_PASSWORD"),
		plainHTTP: u.Scheme == "http", insecure: os.Getenv("HARBOR_INSECURE") == "true", caFile: os.Getenv("HARBOR_CA_FILE"),
		// Deliveries come 1–5 s after the action (HARBOR.md §7).
		wait: 45 * time.Second}
	listen, hookURL := os.Getenv("HARBOR_WEBHOOK_LISTEN"), os.Getenv("HARBOR_WEBHOOK_URL")
	switch {
	case listen == "" || hookURL == "":
		tg.noHooks = "no webhook listener Harbor can reach: HARBOR_WEBHOOK_LISTEN and HARBOR_WEBHOOK_URL must both be set"
	default:
		tg.hooks = newHookReceiver(t, listen, hookURL)
	}
	return tg, ""
}

// target is a Harbor the suite runs against: its URL, the administrator, the registry host for pushes, and
// where its webhook deliveries are recorded.
type target struct {
	real                bool
	url                 string // scheme://host[:port]
	host                string // host[:port] of image references
	user, pass          string
	plainHTTP, insecure bool
	caFile              string
	hooks               *hookReceiver // nil: event subtests skip (noHooks says why)
	noHooks             string
	wait                time.Duration // deadline for a delivery
	// slowScans, on the stand-in only, starts a second target whose scans stay pending (a long scan
	// delay), for what can be seen only while a scan runs; nil for a real Harbor, whose scans cannot be held.
	slowScans func(t *testing.T) *target

	hc  *http.Client
	api *harbor.Client
	src *registrytest.Registry // where images are built before regclient copies them in
	rc  *regclient.RegClient
}

func runContract(t *testing.T, tg *target) {
	tg.connect(t)

	for _, st := range []struct {
		name  string
		hooks bool
		fn    func(t *testing.T, tg *target)
	}{
		{"projects", false, contractProjects},
		{"auth", false, contractAuth},
		{"paging", false, contractPaging},
		{"artifacts", false, contractArtifacts},
		{"tags", false, contractTags},
		{"copy", false, contractCopy},
		{"immutable", false, contractImmutable},
		{"labels", false, contractLabels},
		{"webhook-policies", false, contractPolicies},
		{"events", true, contractEvents},
		{"scan", true, contractScan},
		{"scan-request", false, contractScanRequest},
		{"scan-pull", true, contractScanPull},
		{"accessories", true, contractAccessories},
	} {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			if st.hooks && tg.hooks == nil {
				t.Skip(tg.noHooks)
			}
			st.fn(t, tg)
		})
	}
}

// connect makes tg's clients: the API's, regclient's (for the target and the source registry) and a raw one.
func (tg *target) connect(t *testing.T) {
	tr, err := registry.HTTPTransport(registry.Host{Name: tg.host, CAFile: tg.caFile, Insecure: tg.insecure, PlainHTTP: tg.plainHTTP})
	if err != nil {
		t.Fatal(err)
	}
	tg.hc = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	// Before the stand-in stops: a connection dialled but never used keeps its Shutdown waiting 5 s.
	t.Cleanup(tr.CloseIdleConnections)
	tg.api, err = harbor.New(harbor.Host{Name: tg.url, Username: tg.user, Password: secret.Secret(tg.pass),
		CAFile: tg.caFile, Insecure: tg.insecure, PlainHTTP: tg.plainHTTP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.api.Close)
	tg.src = registrytest.New(t)
	tls := rcconfig.TLSEnabled
	switch {
	case tg.plainHTTP:
		tls = rcconfig.TLSDisabled
	case tg.insecure:
		tls = rcconfig.TLSInsecure
	}
	hosts := []rcconfig.Host{{Name: tg.host, TLS: tls, User: tg.user, Pass: tg.pass, RegCert: readFile(t, tg.caFile)},
		{Name: tg.src.Host, TLS: rcconfig.TLSDisabled}}
	rcOpts := []regclient.Opt{regclient.WithConfigHost(hosts...)}
	if tg.plainHTTP {
		// regclient's own transport has no way to be closed, and a connection it dialled but never used
		// holds a stand-in's Shutdown 5 s; this one is closed before the stand-in stops. (Plain HTTP only:
		// regclient rewrites the TLS settings of a transport it is given.)
		rcTr := http.DefaultTransport.(*http.Transport).Clone()
		t.Cleanup(rcTr.CloseIdleConnections)
		rcOpts = append(rcOpts, regclient.WithRegOpts(reg.WithTransport(rcTr)))
	}
	tg.rc = regclient.New(rcOpts...)
}

func readFile(t *testing.T, name string) string {
	if name == "" {
		return ""
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// project creates a private project with a unique name (hfct-…) and deletes it, best-effort, when the test
// ends: immutable rules first (they block deletes), then artifacts, repositories, labels, policies.
func (tg *target) project(t *testing.T) (name string, id int64) {
	t.Helper()
	return tg.projectSpec(t, harbor.ProjectSpec{})
}

// projectSpec is project with spec's settings (its Name is ignored).
func (tg *target) projectSpec(t *testing.T, spec harbor.ProjectSpec) (name string, id int64) {
	t.Helper()
	name = "hfct-" + randomHex(5)
	spec.Name = name
	id, err := tg.api.CreateProject(ctxOf(t), spec)
	if err != nil {
		t.Fatalf("creating project: %v", err)
	}
	t.Cleanup(func() { tg.cleanup(t, name, id) })
	return name, id
}

func (tg *target) cleanup(t *testing.T, name string, id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var failed []string
	note := func(what string, err error) {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", what, err))
		}
	}
	if rules, err := tg.api.ImmutableRules(ctx, name); err == nil {
		for _, r := range rules {
			note("deleting immutable rule", tg.deleteRaw(ctx, fmt.Sprintf("/projects/%s/immutabletagrules/%d", name, r.ID)))
		}
	}
	repos, err := tg.api.Repositories(ctx, name)
	note("listing repositories", err)
	for _, r := range repos {
		short := strings.TrimPrefix(r.Name, name+"/")
		arts, err := tg.api.Artifacts(ctx, name, short)
		note("listing artifacts", err)
		for _, a := range arts {
			note("deleting artifact", tg.api.DeleteArtifact(ctx, name, short, a.Digest))
		}
		// Harbor refuses to delete a project that still has repositories; the stand-in has no DELETE of a
		// repository (405) and deletes a project whose repositories are empty.
		if tg.real {
			note("deleting repository", tg.deleteRaw(ctx, "/projects/"+name+"/repositories/"+url.PathEscape(url.PathEscape(short))))
		}
	}
	if labels, err := tg.api.Labels(ctx, id); err == nil {
		for _, l := range labels {
			note("deleting label", tg.deleteRaw(ctx, fmt.Sprintf("/labels/%d", l.ID)))
		}
	}
	if pols, err := tg.api.WebhookPolicies(ctx, name); err == nil {
		for _, p := range pols {
			note("deleting webhook policy", tg.deleteRaw(ctx, fmt.Sprintf("/projects/%s/webhook/policies/%d", name, p.ID)))
		}
	}
	note("deleting project", tg.api.DeleteProject(ctx, name))
	if len(failed) > 0 {
		t.Logf("cleaning up project %s (best-effort): %s", name, strings.Join(failed, "; "))
	}
}

func (tg *target) deleteRaw(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, tg.url+"/api/v2.0"+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(tg.user, tg.pass)
	req.Header.Set("X-Is-Resource-Name", "true")
	resp, err := tg.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("DELETE %s: %s", path, resp.Status)
	}
	return nil
}

// reply is a raw answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// Credentials of a raw request.
const (
	asAdmin = iota
	asAnonymous
	wrongPassword
)

// do sends a raw request to path (under the target's URL) for what the wire says: status, headers, error body.
// header is name, value pairs.
func (tg *target) do(t *testing.T, method, path string, who int, body any, header ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctxOf(t), method, tg.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	switch who {
	case asAdmin:
		req.SetBasicAuth(tg.user, tg.pass)
	case wrongPassword:
		req.SetBasicAuth(tg.user, tg.pass+"-wrong")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := tg.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantStatus fails the test unless r has status.
func wantStatus(t *testing.T, what string, r reply, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
}

// wantHarborError fails the test unless r is Harbor's error body (HARBOR.md §3.1) with status and code.
func wantHarborError(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	wantStatus(t, what, r, status)
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s: error Content-Type %q, want application/json; charset=utf-8 (HARBOR.md §7)", what, ct)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != code {
		t.Errorf("%s: body %s, want {\"errors\":[{\"code\":%q,…}]}", what, r.body, code)
	}
}

// wantErr fails the test unless err is an *harbor.Error matching kind with Harbor's code.
func wantErr(t *testing.T, what string, err, kind error, code string) {
	t.Helper()
	var he *harbor.Error
	if !errors.Is(err, kind) || !errors.As(err, &he) {
		t.Errorf("%s: %v, want %v", what, err, kind)
		return
	}
	if code != "" && he.Code != code {
		t.Errorf("%s: code %q, want %q (%v)", what, he.Code, code, err)
	}
}

// image builds a single-platform image in the source registry; distinct ids give distinct digests.
func (tg *target) image(t *testing.T, id string, labels map[string]string) registrytest.Pushed {
	t.Helper()
	l := map[string]string{"hfct.id": id}
	for k, v := range labels {
		l[k] = v
	}
	return tg.src.PushImage(t, "src/"+randomHex(4)+":"+id, registrytest.Image{Labels: l, Layer: id})
}

// index builds a two-platform index in the source registry.
func (tg *target) index(t *testing.T, id string) registrytest.Pushed {
	t.Helper()
	return tg.src.PushIndex(t, "src/"+randomHex(4)+":"+id, registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", Labels: map[string]string{"hfct.id": id}, Layer: id + "-amd64"},
		{Platform: "linux/arm64", Labels: map[string]string{"hfct.id": id}, Layer: id + "-arm64"},
	}})
}

// push copies what the source registry holds at p into the target as dst (project/repo:tag or
// project/repo@digest), as any client pushes: an index's manifests by digest, then the index.
func (tg *target) push(t *testing.T, p registrytest.Pushed, dst string) {
	t.Helper()
	from, err := ref.New(p.Ref)
	if err != nil {
		t.Fatal(err)
	}
	to, err := ref.New(tg.host + "/" + dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.rc.ImageCopy(ctxOf(t), from, to); err != nil {
		t.Fatalf("pushing %s to %s: %v", p.Ref, dst, err)
	}
}

// HARBOR.md §3.1, §7: creating, reading and listing projects.
func contractProjects(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, id := tg.project(t)
	if id <= 0 {
		t.Errorf("project id %d", id)
	}
	_, err := tg.api.CreateProject(ctx, harbor.ProjectSpec{Name: name})
	wantErr(t, "duplicate project", err, harbor.ErrConflict, "CONFLICT")

	upper := "HFCT-" + randomHex(4)
	r := tg.do(t, http.MethodPost, "/api/v2.0/projects", asAdmin, map[string]any{"project_name": upper})
	wantHarborError(t, "upper-case project name", r, http.StatusBadRequest, "BAD_REQUEST")
	if r.status/100 == 2 {
		_ = tg.api.DeleteProject(ctx, upper)
	}
	// Metadata values are strings; a JSON boolean fails go-swagger's validation (§7).
	boolName := "hfct-" + randomHex(5)
	r = tg.do(t, http.MethodPost, "/api/v2.0/projects", asAdmin, map[string]any{"project_name": boolName, "metadata": map[string]any{"public": false}})
	wantHarborError(t, "metadata public as a JSON boolean", r, http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY")
	if r.status/100 == 2 {
		_ = tg.api.DeleteProject(ctx, boolName)
	}

	// 201 with Location /api/v2.0/projects/<id> (§7).
	raw := "hfct-" + randomHex(5)
	r = tg.do(t, http.MethodPost, "/api/v2.0/projects", asAdmin, map[string]any{"project_name": raw, "metadata": map[string]string{"public": "false"}})
	wantStatus(t, "create project", r, http.StatusCreated)
	if rawID, err := tg.api.Project(ctx, raw); err != nil || r.header.Get("Location") != fmt.Sprintf("/api/v2.0/projects/%d", rawID.ID) {
		t.Errorf("create project: Location %q, project %+v, %v", r.header.Get("Location"), rawID, err)
	}
	if err := tg.api.DeleteProject(ctx, raw); err != nil {
		t.Errorf("deleting project %s: %v", raw, err)
	}

	p, err := tg.api.Project(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != id || p.Name != name || p.Public() {
		t.Errorf("project %+v, want id %d, %s, private", p, id, name)
	}
	all, err := tg.api.Projects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all, func(p harbor.Project) bool { return p.Name == name && p.ID == id }) {
		t.Errorf("project %s not listed among %d", name, len(all))
	}

	// go-client reads metadata at …/metadatas/ (a trailing slash, as Harbor's swagger declares it).
	md, err := tg.api.ProjectMetadata(ctx, name)
	if err != nil || md[harbor.MetadataPublic] != "false" {
		t.Errorf("metadata of %s: %v, %v; want public \"false\"", name, md, err)
	}
	scanName, _ := tg.projectSpec(t, harbor.ProjectSpec{AutoScan: true})
	md, err = tg.api.ProjectMetadata(ctx, scanName)
	if err != nil || md[harbor.MetadataAutoScan] != "true" {
		t.Errorf("metadata of %s: %v, %v; want auto_scan \"true\"", scanName, md, err)
	}
	r = tg.do(t, http.MethodGet, "/api/v2.0/projects/"+scanName+"/metadatas/"+harbor.MetadataAutoScan, asAdmin, nil, "X-Is-Resource-Name", "true")
	wantStatus(t, "get one metadata key", r, http.StatusOK)
	if got := strings.TrimSpace(string(r.body)); got != `{"auto_scan":"true"}` {
		t.Errorf("metadata key auto_scan: %s, want {\"auto_scan\":\"true\"}", got)
	}

	// Every response echoes X-Request-Id (§3.1).
	sent := "hfct-" + randomHex(8)
	r = tg.do(t, http.MethodGet, "/api/v2.0/projects/"+name, asAdmin, nil, "X-Request-Id", sent, "X-Is-Resource-Name", "true")
	wantStatus(t, "get project", r, http.StatusOK)
	if got := r.header.Get("X-Request-Id"); got != sent {
		t.Errorf("X-Request-Id %q, want %q echoed", got, sent)
	}
}

// HARBOR.md §7: a wrong password reads as anonymous where anonymous may read, 401 elsewhere; /v2/ challenges.
func contractAuth(t *testing.T, tg *target) {
	name, _ := tg.project(t)
	listed := func(who int) bool {
		r := tg.do(t, http.MethodGet, "/api/v2.0/projects?name="+name, who, nil)
		wantStatus(t, "list projects", r, http.StatusOK)
		var ps []struct{ Name string }
		if err := json.Unmarshal(r.body, &ps); err != nil {
			t.Fatalf("projects %s: %v", r.body, err)
		}
		return slices.ContainsFunc(ps, func(p struct{ Name string }) bool { return p.Name == name })
	}
	if !listed(asAdmin) {
		t.Errorf("the administrator does not see private project %s", name)
	}
	if listed(wrongPassword) {
		t.Errorf("with a wrong password, private project %s is listed; want it absent (anonymous, §7)", name)
	}

	r := tg.do(t, http.MethodGet, "/api/v2.0/projects/"+name, wrongPassword, nil)
	wantStatus(t, "private project with a wrong password", r, http.StatusUnauthorized)
	if got, want := string(bytes.TrimSpace(r.body)), `{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized"}]}`; got != want {
		t.Errorf("401 body %s, want %s (§7)", got, want)
	}

	r = tg.do(t, http.MethodGet, "/v2/", asAnonymous, nil)
	wantStatus(t, "/v2/ without credentials", r, http.StatusUnauthorized)
	if got, want := r.header.Get("Www-Authenticate"), `Bearer realm="`+tg.url+`/service/token",service="harbor-registry"`; got != want {
		t.Errorf("Www-Authenticate %q, want %q (§7)", got, want)
	}
	wantStatus(t, "/v2/ with basic auth", tg.do(t, http.MethodGet, "/v2/", asAdmin, nil), http.StatusOK)
}

// HARBOR.md §3.1: page_size at most 100; X-Total-Count and a path-only Link joined by " , ".
func contractPaging(t *testing.T, tg *target) {
	name, _ := tg.project(t)
	for i := range 3 {
		tg.push(t, tg.image(t, fmt.Sprintf("page-%d", i), nil), fmt.Sprintf("%s/app:%d", name, i))
	}
	base := "/api/v2.0/projects/" + name + "/repositories/app/artifacts"
	wantHarborError(t, "page_size=101", tg.do(t, http.MethodGet, base+"?page_size=101", asAdmin, nil),
		http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY")

	link := func(page int, rel string) string {
		return fmt.Sprintf(`<%s?page=%d&page_size=1>; rel="%s"`, base, page, rel)
	}
	wantLinks := []string{link(2, "next"), link(1, "prev") + " , " + link(3, "next"), link(2, "prev")}
	seen := map[string]bool{}
	for page := 1; page <= 3; page++ {
		r := tg.do(t, http.MethodGet, fmt.Sprintf("%s?page=%d&page_size=1", base, page), asAdmin, nil)
		wantStatus(t, "page", r, http.StatusOK)
		var arts []struct{ Digest string }
		if err := json.Unmarshal(r.body, &arts); err != nil || len(arts) != 1 {
			t.Fatalf("page %d: %s", page, r.body)
		}
		seen[arts[0].Digest] = true
		if got := r.header.Get("X-Total-Count"); got != "3" {
			t.Errorf("page %d: X-Total-Count %q, want 3", page, got)
		}
		if got := r.header.Get("Link"); got != wantLinks[page-1] {
			t.Errorf("page %d: Link %q\nwant %q", page, got, wantLinks[page-1])
		}
	}
	if len(seen) != 3 {
		t.Errorf("three pages gave %d artifacts", len(seen))
	}
}

// HARBOR.md §3.2, §7: lists show roots only; an index has references, an image its config labels.
func contractArtifacts(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, _ := tg.project(t)
	img := tg.image(t, "single", map[string]string{"update_level": "15"})
	idx := tg.index(t, "multi")
	tg.push(t, img, name+"/base/am:4.2.0.15")
	tg.push(t, idx, name+"/multi:1")

	arts, err := tg.api.Artifacts(ctx, name, "multi")
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 1 || arts[0].Digest != idx.Digest {
		t.Fatalf("multi lists %d artifacts, want the index %s only", len(arts), idx.Digest)
	}
	if refs := arts[0].References; len(refs) != 2 || !slices.ContainsFunc(refs, func(r harbor.Reference) bool {
		return r.Digest == idx.Children[0].Digest
	}) || !slices.ContainsFunc(refs, func(r harbor.Reference) bool { return r.Digest == idx.Children[1].Digest }) {
		t.Errorf("index references %+v, want its two children", refs)
	}
	if got := arts[0].TagNames(); !slices.Equal(got, []string{"1"}) {
		t.Errorf("index tags %v", got)
	}
	r := tg.do(t, http.MethodGet, "/api/v2.0/projects/"+name+"/repositories/multi/artifacts", asAdmin, nil)
	wantStatus(t, "list", r, http.StatusOK)
	if got := r.header.Get("X-Total-Count"); got != "1" {
		t.Errorf("X-Total-Count %q, want 1: roots only (§7)", got)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("success Content-Type %q, want application/json (§7)", ct)
	}

	// A repository name with a slash is double-escaped by the client (§3.1).
	byTag, err := tg.api.Artifact(ctx, name, "base/am", "4.2.0.15")
	if err != nil {
		t.Fatal(err)
	}
	if byTag.Digest != img.Digest || byTag.ConfigLabels["update_level"] != "15" || len(byTag.References) != 0 {
		t.Errorf("image by tag: digest %s config labels %v references %v", byTag.Digest, byTag.ConfigLabels, byTag.References)
	}
	byDigest, err := tg.api.Artifact(ctx, name, "base/am", img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if byDigest.ID != byTag.ID || !slices.Equal(byDigest.TagNames(), []string{"4.2.0.15"}) {
		t.Errorf("by digest: id %d tags %v, by tag id %d", byDigest.ID, byDigest.TagNames(), byTag.ID)
	}
	child, err := tg.api.Artifact(ctx, name, "multi", idx.Children[0].Digest)
	if err != nil || child.Digest != idx.Children[0].Digest {
		t.Errorf("index child by digest: %+v, %v", child, err)
	}
	_, err = tg.api.Artifact(ctx, name, "multi", "nope")
	wantErr(t, "missing tag", err, harbor.ErrNotFound, "NOT_FOUND")

	// A missing repository lists as empty (§7).
	r = tg.do(t, http.MethodGet, "/api/v2.0/projects/"+name+"/repositories/missing/artifacts", asAdmin, nil)
	wantStatus(t, "missing repository", r, http.StatusOK)
	if string(bytes.TrimSpace(r.body)) != "[]" || r.header.Get("X-Total-Count") != "0" {
		t.Errorf("missing repository: %s, X-Total-Count %q; want [] and 0", r.body, r.header.Get("X-Total-Count"))
	}
	if got, err := tg.api.Artifacts(ctx, name, "missing"); err != nil || len(got) != 0 {
		t.Errorf("client on a missing repository: %v, %v", got, err)
	}
}

// HARBOR.md §3.2, §7: POST …/tags never moves a tag (409), tags come and go, deleting an artifact by one tag
// deletes it with every tag.
func contractTags(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, _ := tg.project(t)
	a, b := tg.image(t, "tag-a", nil), tg.image(t, "tag-b", nil)
	tg.push(t, a, name+"/app:1")
	tg.push(t, b, name+"/app:2")

	wantErr(t, "a tag already on this artifact", tg.api.CreateTag(ctx, name, "app", a.Digest, "1"), harbor.ErrConflict, "CONFLICT")
	wantErr(t, "a tag on another artifact", tg.api.CreateTag(ctx, name, "app", a.Digest, "2"), harbor.ErrConflict, "CONFLICT")
	r := tg.do(t, http.MethodPost, "/api/v2.0/projects/"+name+"/repositories/app/artifacts/"+a.Digest+"/tags", asAdmin, map[string]string{"name": "3"})
	wantStatus(t, "new tag", r, http.StatusCreated)
	if loc := r.header.Get("Location"); loc != "" {
		t.Errorf("POST …/tags Location %q, want none (§7)", loc)
	}
	if got, err := tg.api.Artifact(ctx, name, "app", "3"); err != nil || got.Digest != a.Digest {
		t.Fatalf("tag 3: %+v, %v", got, err)
	}
	if err := tg.api.DeleteTag(ctx, name, "app", a.Digest, "3"); err != nil {
		t.Fatal(err)
	}
	_, err := tg.api.Artifact(ctx, name, "app", "3")
	wantErr(t, "deleted tag", err, harbor.ErrNotFound, "NOT_FOUND")
	if got, err := tg.api.Artifact(ctx, name, "app", "2"); err != nil || got.Digest != b.Digest {
		t.Errorf("tag 2 moved: %+v, %v", got, err)
	}

	if err := tg.api.CreateTag(ctx, name, "app", a.Digest, "1b"); err != nil {
		t.Fatal(err)
	}
	r = tg.do(t, http.MethodDelete, "/api/v2.0/projects/"+name+"/repositories/app/artifacts/1", asAdmin, nil)
	wantStatus(t, "artifact delete by tag", r, http.StatusOK)
	for _, tag := range []string{"1", "1b"} {
		_, err := tg.api.Artifact(ctx, name, "app", tag)
		wantErr(t, "tag "+tag+" of the deleted artifact", err, harbor.ErrNotFound, "")
	}
	_, err = tg.api.Artifact(ctx, name, "app", a.Digest)
	wantErr(t, "deleted artifact by digest", err, harbor.ErrNotFound, "")
}

// HARBOR.md §3.2, §7: copy takes every tag; a missing source is 400, a missing project 404.
func contractCopy(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, _ := tg.project(t)
	img := tg.image(t, "copy", nil)
	tg.push(t, img, name+"/src:1")
	if err := tg.api.CreateTag(ctx, name, "src", "1", "latest"); err != nil {
		t.Fatal(err)
	}
	if err := tg.api.CopyArtifact(ctx, name, "dst", name+"/src:1"); err != nil {
		t.Fatal(err)
	}
	got, err := tg.api.Artifact(ctx, name, "dst", img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	tags := got.TagNames()
	slices.Sort(tags)
	if !slices.Equal(tags, []string{"1", "latest"}) {
		t.Errorf("copied tags %v, want every tag of the source (§1.6)", tags)
	}
	// On the wire: 201 with Location <path>/<reference> (§3.2, §7.1), here by digest.
	r := tg.do(t, http.MethodPost, "/api/v2.0/projects/"+name+"/repositories/dst2/artifacts?from="+url.QueryEscape(name+"/src@"+img.Digest), asAdmin, nil)
	wantStatus(t, "copy by digest", r, http.StatusCreated)
	if want := "/api/v2.0/projects/" + name + "/repositories/dst2/artifacts/" + img.Digest; r.header.Get("Location") != want {
		t.Errorf("copy Location %q, want %q", r.header.Get("Location"), want)
	}
	wantErr(t, "copy from a missing source", tg.api.CopyArtifact(ctx, name, "dst", name+"/src:nope"), harbor.ErrBadRequest, "BAD_REQUEST")
	wantErr(t, "copy into a missing project", tg.api.CopyArtifact(ctx, "hfct-missing-"+randomHex(4), "dst", name+"/src:1"), harbor.ErrNotFound, "NOT_FOUND")
}

// HARBOR.md §7.1: immutable rules; every way of moving or deleting a matching tag is 412 PRECONDITION.
func contractImmutable(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, _ := tg.project(t)
	img, other := tg.image(t, "imm-1", nil), tg.image(t, "imm-2", nil)
	tg.push(t, img, name+"/am:4.2.0.1")
	tg.push(t, other, name+"/other:4.2.0.1")
	tg.push(t, img, name+"/same:4.2.0.1")
	rule := harbor.ImmutableRule{
		TagSelectors:   []harbor.Selector{{Kind: "doublestar", Decoration: "matches", Pattern: "4.*.*.[0-9]*"}},
		ScopeSelectors: map[string][]harbor.Selector{"repository": {{Kind: "doublestar", Decoration: "repoMatches", Pattern: "**"}}},
	}
	id, err := tg.api.CreateImmutableRule(ctx, name, rule)
	if err != nil || id <= 0 {
		t.Fatalf("creating rule: %d, %v", id, err)
	}
	_, err = tg.api.CreateImmutableRule(ctx, name, rule)
	wantErr(t, "duplicate rule", err, harbor.ErrConflict, "CONFLICT")

	wantErr(t, "tag delete", tg.api.DeleteTag(ctx, name, "am", img.Digest, "4.2.0.1"), harbor.ErrPrecondition, "PRECONDITION")
	wantErr(t, "artifact delete by tag", tg.api.DeleteArtifact(ctx, name, "am", "4.2.0.1"), harbor.ErrPrecondition, "PRECONDITION")
	wantErr(t, "artifact delete by digest", tg.api.DeleteArtifact(ctx, name, "am", img.Digest), harbor.ErrPrecondition, "PRECONDITION")
	wantErr(t, "copy onto the tag", tg.api.CopyArtifact(ctx, name, "am", name+"/other:4.2.0.1"), harbor.ErrPrecondition, "PRECONDITION")
	// Even the identical artifact: "cannot be updated", unqualified (§7.1).
	err = tg.api.CopyArtifact(ctx, name, "am", name+"/same:4.2.0.1")
	wantErr(t, "copy of the identical artifact onto the tag", err, harbor.ErrPrecondition, "PRECONDITION")
	if err != nil && !strings.Contains(err.Error(), "cannot be updated") {
		t.Errorf("copy of the identical artifact onto the tag: %v, want \"…cannot be updated\"", err)
	}

	// Even the identical manifest cannot be pushed onto it again (§7.1).
	mt, body := tg.src.ReadManifest(t, strings.TrimPrefix(img.Ref, tg.src.Host+"/"))
	r := tg.do(t, http.MethodPut, "/v2/"+name+"/am/manifests/4.2.0.1", asAdmin, body, "Content-Type", mt)
	wantHarborError(t, "/v2/ push onto the tag", r, http.StatusPreconditionFailed, "PRECONDITION")

	if got, err := tg.api.Artifact(ctx, name, "am", "4.2.0.1"); err != nil || got.Digest != img.Digest {
		t.Errorf("after the refusals: %+v, %v; want the tag where it was", got, err)
	}
	// A tag the rule does not match comes and goes; adding one it matches is allowed (§7.1).
	if err := tg.api.CreateTag(ctx, name, "am", img.Digest, "dev"); err != nil {
		t.Fatal(err)
	}
	if err := tg.api.DeleteTag(ctx, name, "am", img.Digest, "dev"); err != nil {
		t.Errorf("deleting a tag the rule does not match: %v", err)
	}
	if err := tg.api.CreateTag(ctx, name, "am", img.Digest, "4.2.0.9"); err != nil {
		t.Errorf("adding a new matching tag through the API: %v", err)
	}
}

// HARBOR.md §7.1: labels are created once, added once and removed once.
func contractLabels(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, pid := tg.project(t)
	img := tg.image(t, "label", nil)
	tg.push(t, img, name+"/app:1")
	l := harbor.Label{Name: "hfct-" + randomHex(4), Color: "#00AA00", Scope: harbor.LabelScopeProject, ProjectID: pid}
	id, err := tg.api.CreateLabel(ctx, l)
	if err != nil || id <= 0 {
		t.Fatalf("creating label: %d, %v", id, err)
	}
	_, err = tg.api.CreateLabel(ctx, l)
	wantErr(t, "duplicate label", err, harbor.ErrConflict, "CONFLICT")

	if err := tg.api.AddLabel(ctx, name, "app", "1", id); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "label added again", tg.api.AddLabel(ctx, name, "app", "1", id), harbor.ErrConflict, "CONFLICT")
	wantErr(t, "unknown label", tg.api.AddLabel(ctx, name, "app", "1", 1<<40), harbor.ErrNotFound, "NOT_FOUND")
	got, err := tg.api.Artifact(ctx, name, "app", "1", harbor.WithLabels())
	if err != nil || len(got.Labels) != 1 || got.Labels[0].ID != id || got.Labels[0].Scope != harbor.LabelScopeProject {
		t.Errorf("artifact labels: %+v, %v", got, err)
	}
	if err := tg.api.RemoveLabel(ctx, name, "app", "1", id); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "label removed again", tg.api.RemoveLabel(ctx, name, "app", "1", id), harbor.ErrNotFound, "NOT_FOUND")
}

// HARBOR.md §1.1, §7: webhook policies.
func contractPolicies(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, _ := tg.project(t)
	auth := "Bearer hfct-" + randomHex(8)
	pol := harbor.WebhookPolicy{Name: "hfct", Enabled: true, EventTypes: []string{"PUSH_ARTIFACT", "DELETE_ARTIFACT"},
		Targets: []harbor.WebhookTarget{{Address: "http://127.0.0.1:9/hook?x=1", AuthHeader: secret.Secret(auth), PayloadFormat: harbor.PayloadCloudEvents}}}
	id, err := tg.api.CreateWebhookPolicy(ctx, name, pol)
	if err != nil || id <= 0 {
		t.Fatalf("creating policy: %d, %v", id, err)
	}
	_, err = tg.api.CreateWebhookPolicy(ctx, name, pol)
	wantErr(t, "duplicate policy name", err, harbor.ErrConflict, "CONFLICT")
	bad := pol
	bad.Name, bad.EventTypes = "hfct-bad", []string{"CREATE_TAG"}
	_, err = tg.api.CreateWebhookPolicy(ctx, name, bad)
	wantErr(t, "unsupported event type", err, harbor.ErrBadRequest, "BAD_REQUEST")

	r := tg.do(t, http.MethodGet, "/api/v2.0/projects/"+name+"/webhook/policies", asAdmin, nil)
	wantStatus(t, "list policies", r, http.StatusOK)
	if !bytes.Contains(r.body, []byte(`"auth_header":"`+auth+`"`)) {
		t.Errorf("policy list %s: want the auth header in clear (§7)", r.body)
	}
	pols, err := tg.api.WebhookPolicies(ctx, name)
	if err != nil || len(pols) != 1 || pols[0].ID != id || len(pols[0].Targets) != 1 {
		t.Fatalf("policies %+v, %v", pols, err)
	}
	if tgt := pols[0].Targets[0]; tgt.AuthHeader.Value() != auth || tgt.Address != "http://127.0.0.1:9/hook?x=1" ||
		tgt.PayloadFormat != harbor.PayloadCloudEvents {
		t.Errorf("target %+v, want it as created (address verbatim, §1.1)", tgt)
	}
}

// HARBOR.md §1.3–§1.6, §7: what each action delivers, to a Default and a CloudEvents policy alike. Order
// within one action is not promised (§7), so each step compares sets; each step waits for its own deliveries
// before the next action, and a step that must deliver nothing is followed by one that delivers: anything
// between shows up in that step's set.
func contractEvents(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, pid := tg.project(t)
	sub := tg.subscribe(t, name, "PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT")
	expect := func(step string, want ...hookEvent) {
		t.Helper()
		sub.expect(t, step, want...)
	}
	push := func(typ, repo, tag, digest string) hookEvent {
		return hookEvent{typ: typ, repo: name + "/" + repo, tag: tag, digest: digest}
	}

	img := tg.image(t, "ev-1", nil)
	tg.push(t, img, name+"/app:1")
	expect("push by tag", push("PUSH_ARTIFACT", "app", "1", img.Digest))

	byDigest := tg.image(t, "ev-2", nil)
	tg.push(t, byDigest, name+"/app@"+byDigest.Digest)
	expect("push by digest (tag is the digest, §1.4)", push("PUSH_ARTIFACT", "app", byDigest.Digest, byDigest.Digest))

	idx := tg.index(t, "ev-3")
	tg.push(t, idx, name+"/multi:1")
	expect("two-platform push (N+1, §1.6)",
		push("PUSH_ARTIFACT", "multi", idx.Children[0].Digest, idx.Children[0].Digest),
		push("PUSH_ARTIFACT", "multi", idx.Children[1].Digest, idx.Children[1].Digest),
		push("PUSH_ARTIFACT", "multi", "1", idx.Digest))

	// Nothing for: a tag through the API (CREATE_TAG cannot be subscribed to, §1.1), a label added and removed
	// (§7.1), a HEAD (§1.3). The GET after them is the one delivery.
	if err := tg.api.CreateTag(ctx, name, "app", "1", "extra"); err != nil {
		t.Fatal(err)
	}
	lid, err := tg.api.CreateLabel(ctx, harbor.Label{Name: "hfct-" + randomHex(4), Scope: harbor.LabelScopeProject, ProjectID: pid})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.api.AddLabel(ctx, name, "app", "1", lid); err != nil {
		t.Fatal(err)
	}
	if err := tg.api.RemoveLabel(ctx, name, "app", "1", lid); err != nil {
		t.Fatal(err)
	}
	r, err := ref.New(tg.host + "/" + name + "/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.rc.ManifestHead(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.rc.ManifestGet(ctx, r); err != nil {
		t.Fatal(err)
	}
	expect("API tag, label, HEAD: nothing; GET: PULL_ARTIFACT", push("PULL_ARTIFACT", "app", "1", img.Digest))

	// The copy reports the source's newest tag (extra), not the one named in from= (§7).
	if err := tg.api.CopyArtifact(ctx, name, "copy", name+"/app:1"); err != nil {
		t.Fatal(err)
	}
	expect("copy", push("PUSH_ARTIFACT", "copy", "extra", img.Digest))

	if err := tg.api.DeleteArtifact(ctx, name, "app", "1"); err != nil {
		t.Fatal(err)
	}
	expect("artifact delete (the newest tag, §7)", push("DELETE_ARTIFACT", "app", "extra", img.Digest))

	// A last delivery, so that a second delete event would show here.
	last := tg.image(t, "ev-4", nil)
	tg.push(t, last, name+"/app:last")
	expect("push after the delete", push("PUSH_ARTIFACT", "app", "last", last.Digest))
}

// subscription is a project's two webhook policies, a Default and a CloudEvents one, each delivering to the
// receiver, and what each has delivered.
type subscription struct {
	tg     *target
	name   string
	auths  map[string]string
	stream map[string]*hookStream
}

var formats = []string{harbor.PayloadDefault, harbor.PayloadCloudEvents}

// subscribe makes the policies of project name for events.
func (tg *target) subscribe(t *testing.T, name string, events ...string) *subscription {
	t.Helper()
	sub := &subscription{tg: tg, name: name, auths: map[string]string{}, stream: map[string]*hookStream{}}
	for _, f := range formats {
		sub.auths[f] = "Bearer hfct-" + randomHex(8)
		_, err := tg.api.CreateWebhookPolicy(ctxOf(t), name, harbor.WebhookPolicy{Name: "hfct-" + f, Enabled: true,
			EventTypes: events,
			Targets:    []harbor.WebhookTarget{{Address: tg.hooks.address(name, f), AuthHeader: secret.Secret(sub.auths[f]), PayloadFormat: f}}})
		if err != nil {
			t.Fatal(err)
		}
		sub.stream[f] = tg.hooks.stream(name, f)
	}
	return sub
}

// expect waits for len(want) deliveries in each format, compares them with want as a set and returns them
// by format.
func (sub *subscription) expect(t *testing.T, step string, want ...hookEvent) map[string][]hookEvent {
	t.Helper()
	out := map[string][]hookEvent{}
	for _, f := range formats {
		got := sub.stream[f].next(t, len(want), sub.tg.wait)
		for _, e := range got {
			if e.auth != sub.auths[f] {
				t.Errorf("%s (%s): Authorization %q, want the policy's", step, f, e.auth)
			}
			if want := contentTypes[f]; e.contentType != want {
				t.Errorf("%s (%s): Content-Type %q, want %q (§1.2)", step, f, e.contentType, want)
			}
			if e.repo != "" && !strings.HasPrefix(e.repo, sub.name+"/") {
				t.Errorf("%s (%s): repository %q of another project", step, f, e.repo)
			}
		}
		if !sameEvents(got, want) {
			t.Errorf("%s (%s):\n got %s\nwant %s", step, f, eventsString(got), eventsString(want))
		}
		out[f] = got
	}
	return out
}

// HARBOR.md §7.1: scans on push in a project with auto_scan. A single image's SCANNING_COMPLETED carries its
// tag and the severity its config label names; a two-platform index is scanned per platform digest, never as
// itself, its events without a tag key, and its API overview is the children's merged: Success at 50 % with
// one child failed, so only each child's own overview can gate.
func contractScan(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, _ := tg.projectSpec(t, harbor.ProjectSpec{AutoScan: true})
	sub := tg.subscribe(t, name, "SCANNING_COMPLETED", "SCANNING_FAILED")
	scanned := func(typ, repo, tag, digest string) hookEvent {
		return hookEvent{typ: typ, repo: name + "/" + repo, tag: tag, digest: digest}
	}
	overview := func(repo, reference string) harbor.ScanSummary {
		t.Helper()
		a, err := tg.api.Artifact(ctx, name, repo, reference, harbor.WithScanOverview())
		if err != nil {
			t.Fatal(err)
		}
		return a.ScanOverview[reportMIME]
	}

	img := tg.image(t, "scan-1", map[string]string{harbortest.LabelSeverity: "High"})
	tg.push(t, img, name+"/app:1")
	for f, es := range sub.expect(t, "single image", scanned("SCANNING_COMPLETED", "app", "1", img.Digest)) {
		if e := es[0]; e.scanStatus != "Success" || e.severity != "High" {
			t.Errorf("single image (%s): scan_overview status %q, severity %q; want Success, High", f, e.scanStatus, e.severity)
		}
	}
	if ov := overview("app", "1"); ov.Status != "Success" || ov.Severity != "High" || ov.CompletePercent != 100 {
		t.Errorf("single image overview %+v, want Success, High, 100 %%", ov)
	}

	idx := tg.src.PushIndex(t, "src/"+randomHex(4)+":scan-2", registrytest.Index{Images: []registrytest.Image{
		{Platform: "linux/amd64", Labels: map[string]string{"hfct.id": "scan-2", harbortest.LabelSeverity: "High"}, Layer: "scan-2-amd64"},
		{Platform: "linux/arm64", Labels: map[string]string{"hfct.id": "scan-2", harbortest.LabelScan: "error"}, Layer: "scan-2-arm64"},
	}})
	good, bad := idx.Children[0], idx.Children[1]
	children := func(step string) {
		t.Helper()
		got := sub.expect(t, step,
			scanned("SCANNING_COMPLETED", "multi", "", good.Digest), scanned("SCANNING_FAILED", "multi", "", bad.Digest))
		for f, es := range got {
			for _, e := range es {
				want := map[string][2]string{good.Digest: {"Success", "High"}, bad.Digest: {"Error", ""}}[e.digest]
				if !e.noTag || e.scanStatus != want[0] || e.severity != want[1] {
					t.Errorf("%s (%s): %s has a tag key %v, status %q, severity %q; want no tag key, %q, %q",
						step, f, e.digest, !e.noTag, e.scanStatus, e.severity, want[0], want[1])
				}
			}
		}
	}
	// The platform manifests first, each scanned at its own push; the index pushed after those scans ended
	// scans each child again (§7.1: otherwise 2 or 4 events, by timing) and never the index itself.
	for _, ch := range idx.Children {
		tg.push(t, ch, name+"/multi@"+ch.Digest)
	}
	children("platform manifests")
	tg.push(t, idx, name+"/multi:1")
	children("index after its children's scans")

	if ov := overview("multi", "1"); ov.Status != "Success" || ov.Severity != "High" || ov.CompletePercent != 50 {
		t.Errorf("index overview %+v, want the merged trap: Success, High, 50 %% (§7.1)", ov)
	}
	if ov := overview("multi", good.Digest); ov.Status != "Success" || ov.Severity != "High" {
		t.Errorf("good child overview %+v, want Success, High", ov)
	}
	if ov := overview("multi", bad.Digest); ov.Status != "Error" || ov.Severity != "" {
		t.Errorf("failed child overview %+v, want Error without severity", ov)
	}

	// A last scan, so that an event for the index (or any other) would show here.
	last := tg.image(t, "scan-3", nil)
	tg.push(t, last, name+"/app:last")
	for f, es := range sub.expect(t, "a last image", scanned("SCANNING_COMPLETED", "app", "last", last.Digest)) {
		if e := es[0]; e.scanStatus != "Success" || e.severity != "None" {
			t.Errorf("a last image (%s): status %q, severity %q; want Success, None", f, e.scanStatus, e.severity)
		}
	}
}

// HARBOR.md §7.1: the scanner's own pull fires PULL_ARTIFACT, by digest (tag = the digest), as the scan's
// robot account robot$<project>+<prefix>-<scanner>-<uuid>; then the scan's event, by the pusher.
func contractScanPull(t *testing.T, tg *target) {
	name, _ := tg.projectSpec(t, harbor.ProjectSpec{AutoScan: true})
	sub := tg.subscribe(t, name, "PULL_ARTIFACT", "SCANNING_COMPLETED")
	img := tg.image(t, "scan-pull", nil)
	tg.push(t, img, name+"/app:1")
	got := sub.expect(t, "scan on push",
		hookEvent{typ: "PULL_ARTIFACT", repo: name + "/app", tag: img.Digest, digest: img.Digest},
		hookEvent{typ: "SCANNING_COMPLETED", repo: name + "/app", tag: "1", digest: img.Digest})
	for f, es := range got {
		for _, e := range es {
			switch e.typ {
			case "PULL_ARTIFACT":
				robot, ok := strings.CutPrefix(e.operator, "robot$"+name+"+")
				if parts := strings.Split(robot, "-"); !ok || len(parts) < 3 {
					t.Errorf("scanner pull (%s): operator %q, want robot$%s+<prefix>-<scanner>-<uuid>", f, e.operator, name)
				}
			case "SCANNING_COMPLETED":
				if e.operator != tg.user {
					t.Errorf("scan (%s): operator %q, want the pusher %q", f, e.operator, tg.user)
				}
			}
		}
	}
}

// HARBOR.md §7.1: a scan request is 202 with an empty body, and 409 CONFLICT while that scan is pending. Only
// the stand-in can hold a scan pending long enough to ask twice.
func contractScanRequest(t *testing.T, tg *target) {
	if tg.slowScans == nil {
		t.Skip("a real Harbor's scan cannot be held pending; 202 then 409 is checked on the stand-in only")
	}
	slow := tg.slowScans(t)
	ctx := ctxOf(t)
	name, _ := slow.project(t)
	img := slow.image(t, "scan-req", nil)
	slow.push(t, img, name+"/app:1")
	r := slow.do(t, http.MethodPost, "/api/v2.0/projects/"+name+"/repositories/app/artifacts/1/scan", asAdmin, map[string]string{"scan_type": "vulnerability"})
	wantStatus(t, "scan request", r, http.StatusAccepted)
	if len(r.body) != 0 {
		t.Errorf("scan request: body %q, want none", r.body)
	}
	wantErr(t, "scan request while one is pending", slow.api.ScanArtifact(ctx, name, "app", img.Digest), harbor.ErrConflict, "CONFLICT")
	if a, err := slow.api.Artifact(ctx, name, "app", "1", harbor.WithScanOverview()); err != nil || a.ScanOverview[reportMIME].Status != "Running" {
		t.Errorf("while pending: %+v, %v; want scan_status Running", a, err)
	}
}

// HARBOR.md §7.1: a cosign signature pushed as tag sha256-<hex>.sig and an OCI referrer (subject) are
// signature.cosign accessories of their subject, listed with with_accessory=true and at …/accessories, never
// roots; each push fires PUSH_ARTIFACT; a scan request on one is 400.
func contractAccessories(t *testing.T, tg *target) {
	ctx := ctxOf(t)
	name, _ := tg.project(t)
	sub := tg.subscribe(t, name, "PUSH_ARTIFACT")
	pushed := func(tag, digest string) hookEvent {
		return hookEvent{typ: "PUSH_ARTIFACT", repo: name + "/app", tag: tag, digest: digest}
	}
	srcRepo := "src/" + randomHex(4)
	img := tg.src.PushImage(t, srcRepo+":1", registrytest.Image{Labels: map[string]string{"hfct.id": "acc"}, Layer: "acc"})
	sig := tg.src.PushSignature(t, srcRepo, img)
	referrer := tg.src.PushReferrer(t, srcRepo, "application/vnd.dev.cosign.artifact.sig.v1+json", img)

	tg.push(t, img, name+"/app:1")
	sub.expect(t, "subject", pushed("1", img.Digest))
	tg.push(t, sig, name+"/app:"+sig.Tag)
	sub.expect(t, "cosign signature by tag", pushed(sig.Tag, sig.Digest))
	tg.push(t, referrer, name+"/app@"+referrer.Digest)
	sub.expect(t, "OCI referrer (tag is the digest)", pushed(referrer.Digest, referrer.Digest))

	if arts, err := tg.api.Artifacts(ctx, name, "app"); err != nil || len(arts) != 1 || arts[0].Digest != img.Digest {
		t.Errorf("artifacts %+v, %v; want the subject alone (accessories are not roots)", arts, err)
	}
	subject, err := tg.api.Artifact(ctx, name, "app", "1", harbor.WithAccessories())
	if err != nil {
		t.Fatal(err)
	}
	check := func(where string, accs []harbor.Accessory) {
		t.Helper()
		digests := map[string]bool{}
		for _, acc := range accs {
			digests[acc.Digest] = true
			if acc.Type != "signature.cosign" || acc.SubjectArtifactDigest != img.Digest || acc.SubjectArtifactID != subject.ID ||
				acc.SubjectArtifactRepo != name+"/app" || acc.ID <= 0 || acc.ArtifactID <= 0 {
				t.Errorf("%s: accessory %+v, want a signature.cosign of %s (id %d)", where, acc, img.Digest, subject.ID)
			}
		}
		if len(accs) != 2 || !digests[sig.Digest] || !digests[referrer.Digest] {
			t.Errorf("%s: accessories %+v, want the signature %s and the referrer %s", where, accs, sig.Digest, referrer.Digest)
		}
	}
	check("with_accessory=true", subject.Accessories)
	accs, err := tg.api.Accessories(ctx, name, "app", "1")
	if err != nil {
		t.Fatal(err)
	}
	check("…/accessories", accs)
	r := tg.do(t, http.MethodGet, "/api/v2.0/projects/"+name+"/repositories/app/artifacts/1/accessories", asAdmin, nil)
	wantStatus(t, "accessories", r, http.StatusOK)
	if got := r.header.Get("X-Total-Count"); got != "2" {
		t.Errorf("accessories: X-Total-Count %q, want 2", got)
	}
	r = tg.do(t, http.MethodGet, "/api/v2.0/projects/"+name+"/repositories/app/artifacts/1", asAdmin, nil)
	wantStatus(t, "artifact", r, http.StatusOK)
	if !bytes.Contains(r.body, []byte(`"accessories":null`)) {
		t.Errorf("without with_accessory: %s, want \"accessories\":null", r.body)
	}
	for _, d := range []string{sig.Digest, referrer.Digest} {
		wantErr(t, "scan request on an accessory", tg.api.ScanArtifact(ctx, name, "app", d), harbor.ErrBadRequest, "BAD_REQUEST")
	}
}

var contentTypes = map[string]string{
	harbor.PayloadDefault:     "application/json",
	harbor.PayloadCloudEvents: "application/cloudevents+json",
}

// cloudEventTypes map CloudEvents types back to Harbor's (§1.3).
var cloudEventTypes = map[string]string{
	"harbor.artifact.pushed":  "PUSH_ARTIFACT",
	"harbor.artifact.pulled":  "PULL_ARTIFACT",
	"harbor.artifact.deleted": "DELETE_ARTIFACT",
	"harbor.scan.completed":   "SCANNING_COMPLETED",
	"harbor.scan.failed":      "SCANNING_FAILED",
	"harbor.scan.stopped":     "SCANNING_STOPPED",
}

// reportMIME keys scan_overview (HARBOR.md §7.1).
const reportMIME = "application/vnd.security.vulnerability.report; version=1.1"

// hookEvent is what a delivery says, in either format.
type hookEvent struct {
	typ, repo, tag, digest string
	// noTag: the resource has no tag key at all (an index child's scan event, §7.1).
	noTag bool
	// scanStatus and severity are the resource's scan_overview (reportMIME) of a scan event.
	scanStatus, severity string
	operator             string
	auth, contentType    string
	body                 []byte
}

func (e hookEvent) key() string {
	return e.typ + " " + e.repo + " tag=" + e.tag + " digest=" + e.digest
}

func sameEvents(got, want []hookEvent) bool {
	keys := func(es []hookEvent) []string {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.key()
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(keys(got), keys(want))
}

func eventsString(es []hookEvent) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, "{"+e.key()+"}")
	}
	return strings.Join(parts, ", ")
}

// hookReceiver records webhook deliveries, POST <url>/<project>/<format>, for both targets.
type hookReceiver struct {
	url string

	mu      sync.Mutex
	got     map[string][]hookEvent // by project/format
	changed chan struct{}          // closed at each delivery
}

// newHookReceiver listens on listen; public is how the Harbor reaches it ("" for the listener's address).
func newHookReceiver(t *testing.T, listen, public string) *hookReceiver {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("webhook listener on %s: %v", listen, err)
	}
	h := &hookReceiver{got: map[string][]hookEvent{}, changed: make(chan struct{})}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	h.url = strings.TrimRight(public, "/")
	if h.url == "" {
		h.url = srv.URL
	}
	return h
}

func (h *hookReceiver) address(project, format string) string {
	return h.url + "/" + project + "/" + format
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, "want a POST", http.StatusBadRequest)
		return
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) < 2 {
		http.NotFound(w, r)
		return
	}
	project, format := segs[len(segs)-2], segs[len(segs)-1]
	e := parseHook(format, body)
	e.auth, e.contentType, e.body = r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body
	h.mu.Lock()
	h.got[project+"/"+format] = append(h.got[project+"/"+format], e)
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// parseHook reads a Default (§1.4) or CloudEvents (§1.5) body; what it cannot read stays empty, and the
// comparison shows the body.
func parseHook(format string, body []byte) hookEvent {
	type data struct {
		Resources []struct {
			Digest       string
			Tag          *string
			ScanOverview map[string]struct {
				ScanStatus string `json:"scan_status"`
				Severity   string
			} `json:"scan_overview"`
		} `json:"resources"`
		Repository struct {
			RepoFullName string `json:"repo_full_name"`
		} `json:"repository"`
	}
	var e hookEvent
	var d data
	if format == harbor.PayloadCloudEvents {
		var ce struct {
			Type     string
			Operator string
			Data     data
		}
		if err := json.Unmarshal(body, &ce); err != nil {
			return hookEvent{typ: "unreadable: " + string(body)}
		}
		e.typ, e.operator, d = cloudEventTypes[ce.Type], ce.Operator, ce.Data
		if e.typ == "" {
			e.typ = ce.Type
		}
	} else {
		var p struct {
			Type      string
			Operator  string
			EventData data `json:"event_data"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return hookEvent{typ: "unreadable: " + string(body)}
		}
		e.typ, e.operator, d = p.Type, p.Operator, p.EventData
	}
	e.repo = d.Repository.RepoFullName
	if len(d.Resources) != 1 {
		e.typ += fmt.Sprintf(" with %d resources", len(d.Resources))
	}
	if len(d.Resources) > 0 {
		r := d.Resources[0]
		e.digest, e.noTag = r.Digest, r.Tag == nil
		if r.Tag != nil {
			e.tag = *r.Tag
		}
		if ov, ok := r.ScanOverview[reportMIME]; ok {
			e.scanStatus, e.severity = ov.ScanStatus, ov.Severity
		}
	}
	return e
}

// hookStream reads the deliveries of one project and format in the order they came.
type hookStream struct {
	h    *hookReceiver
	key  string
	seen int
}

func (h *hookReceiver) stream(project, format string) *hookStream {
	return &hookStream{h: h, key: project + "/" + format}
}

// next waits, until the deadline, for n deliveries after those already read and returns them.
func (s *hookStream) next(t *testing.T, n int, wait time.Duration) []hookEvent {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		s.h.mu.Lock()
		all := s.h.got[s.key]
		if len(all) >= s.seen+n {
			out := slices.Clone(all[s.seen : s.seen+n])
			s.seen += n
			s.h.mu.Unlock()
			return out
		}
		changed := s.h.changed
		s.h.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			s.h.mu.Lock()
			got := slices.Clone(s.h.got[s.key][s.seen:])
			s.h.mu.Unlock()
			t.Fatalf("%s: waited %s for %d deliveries, have %d: %s", s.key, wait, n, len(got), eventsString(got))
		}
	}
}
