package harbortest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// HARBOR.md §7.1: immutable tag rules refuse deleting, copying onto and pushing onto a matching tag (412
// PRECONDITION, identical manifest included, no webhook); new matching tags are fine.
func TestImmutableRules(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	s.CreateProject(t, "prod", false, nil)
	s.CreateProject(t, "stage", false, nil)
	subscribe(t, s, "prod", "PUSH_ARTIFACT", "DELETE_ARTIFACT")
	src := registrytest.New(t)
	src.PushImage(t, "src/am:4.2.0.1", registrytest.Image{Layer: "one"})
	other := src.PushImage(t, "src/am:other", registrytest.Image{Layer: "two"})
	push(t, s, src, "src/am:4.2.0.1", "prod/am:4.2.0.1")
	push(t, s, src, "src/am:other", "stage/am:4.2.0.1")
	push(t, s, src, "src/am:4.2.0.1", "stage/same:4.2.0.1")
	rec.wait(t, 1)

	rule := map[string]any{
		"disabled": false, "action": "immutable", "template": "immutable_template",
		"tag_selectors":   []map[string]any{{"kind": "doublestar", "decoration": "matches", "pattern": "4.*.*.[0-9]*"}},
		"scope_selectors": map[string]any{"repository": []map[string]any{{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}}},
	}
	a := call(t, s, http.MethodPost, "/projects/prod/immutabletagrules", admin, pass, rule, "X-Is-Resource-Name", "true")
	want(t, a, http.StatusCreated)
	if !strings.HasPrefix(a.header.Get("Location"), "/api/v2.0/projects/prod/immutabletagrules/") {
		t.Errorf("Location %q", a.header.Get("Location"))
	}
	msg := wantError(t, call(t, s, http.MethodPost, "/projects/prod/immutabletagrules", admin, pass, rule), http.StatusConflict, "CONFLICT")
	if msg != "immutable rule already exists" {
		t.Errorf("duplicate rule message %q", msg)
	}
	var rules []map[string]any
	call(t, s, http.MethodGet, "/projects/prod/immutabletagrules", admin, pass, nil).json(t, &rules)
	if len(rules) != 1 {
		t.Errorf("rules %v", rules)
	}

	msg = wantError(t, call(t, s, http.MethodDelete, "/projects/prod/repositories/am/artifacts/4.2.0.1/tags/4.2.0.1", admin, pass, nil), http.StatusPreconditionFailed, "PRECONDITION")
	if msg != "the tag 4.2.0.1 configured as immutable, cannot be deleted" {
		t.Errorf("tag delete message %q", msg)
	}
	wantError(t, call(t, s, http.MethodDelete, "/projects/prod/repositories/am/artifacts/4.2.0.1", admin, pass, nil), http.StatusPreconditionFailed, "PRECONDITION")
	var art struct{ Digest string }
	call(t, s, http.MethodGet, "/projects/prod/repositories/am/artifacts/4.2.0.1", admin, pass, nil).json(t, &art)
	wantError(t, raw(t, s, http.MethodDelete, "/v2/prod/am/manifests/"+art.Digest, admin, pass, nil), http.StatusPreconditionFailed, "PRECONDITION")
	msg = wantError(t, call(t, s, http.MethodPost, "/projects/prod/repositories/am/artifacts?from=stage/am:4.2.0.1", admin, pass, nil), http.StatusPreconditionFailed, "PRECONDITION")
	if msg != "the tag 4.2.0.1 configured as immutable, cannot be updated" {
		t.Errorf("copy message %q", msg)
	}

	// The identical artifact, from another project or from the tag itself, cannot be copied onto it either.
	for _, from := range []string{"stage/same:4.2.0.1", "prod/am:4.2.0.1"} {
		msg = wantError(t, call(t, s, http.MethodPost, "/projects/prod/repositories/am/artifacts?from="+from, admin, pass, nil), http.StatusPreconditionFailed, "PRECONDITION")
		if msg != "the tag 4.2.0.1 configured as immutable, cannot be updated" {
			t.Errorf("identical copy from %s: message %q", from, msg)
		}
	}

	// A push of another manifest, or the identical one, onto the tag.
	for _, repoTag := range []string{"src/am:other", "src/am:4.2.0.1"} {
		mt, body := src.ReadManifest(t, repoTag)
		msg = wantError(t, raw(t, s, http.MethodPut, "/v2/prod/am/manifests/4.2.0.1", admin, pass, body, "Content-Type", mt), http.StatusPreconditionFailed, "PRECONDITION")
		if msg != "Failed to process request due to 'am:4.2.0.1' configured as immutable." {
			t.Errorf("push message %q", msg)
		}
	}
	if n := rec.count(); n != 1 {
		t.Errorf("%d events, want only the first push's: a 412 fires nothing", n)
	}

	// New matching tags: by push, by copy and through the API.
	push(t, s, src, "src/am:other", "prod/am:4.2.0.2")
	want(t, call(t, s, http.MethodPost, "/projects/prod/repositories/am/artifacts/4.2.0.2/tags", admin, pass, map[string]string{"name": "4.2.0.3"}), http.StatusCreated)
	want(t, call(t, s, http.MethodPost, "/projects/prod/repositories/other/artifacts?from=stage/am:4.2.0.1", admin, pass, nil), http.StatusCreated)

	var tags []struct {
		Name      string
		Immutable bool
	}
	call(t, s, http.MethodGet, "/projects/prod/repositories/am/artifacts/"+other.Digest+"/tags?with_immutable_status=true", admin, pass, nil).json(t, &tags)
	if len(tags) != 2 || !tags[0].Immutable {
		t.Errorf("tags with immutable status %+v", tags)
	}
	call(t, s, http.MethodGet, "/projects/prod/repositories/am/artifacts/"+other.Digest+"/tags", admin, pass, nil).json(t, &tags)
	if tags[0].Immutable {
		t.Errorf("immutable filled without with_immutable_status")
	}
}

// HARBOR.md §7.1: labels are created (201, Location; 409 again), added to an artifact (200; 409 again; 404 for
// an unknown id), removed (200; 404 again), and shown with with_label only.
func TestLabels(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	pid := s.CreateProject(t, "p", false, nil)
	subscribe(t, s, "p", "PUSH_ARTIFACT", "DELETE_ARTIFACT", "PULL_ARTIFACT")
	src := registrytest.New(t)
	src.PushImage(t, "src/a:1", registrytest.Image{})
	push(t, s, src, "src/a:1", "p/app:1")
	before := len(rec.wait(t, 1))

	a := call(t, s, http.MethodPost, "/labels", admin, pass, map[string]any{"name": "promoted", "color": "#00FF00", "scope": "g"})
	want(t, a, http.StatusCreated)
	gLoc := a.header.Get("Location")
	wantError(t, call(t, s, http.MethodPost, "/labels", admin, pass, map[string]any{"name": "promoted", "scope": "g"}), http.StatusConflict, "CONFLICT")
	a = call(t, s, http.MethodPost, "/labels", admin, pass, map[string]any{"name": "qa", "scope": "p", "project_id": pid})
	want(t, a, http.StatusCreated)
	var g, p struct {
		ID        int64
		Scope     string
		ProjectID int64 `json:"project_id"`
	}
	call(t, s, http.MethodGet, strings.TrimPrefix(gLoc, "/api/v2.0"), admin, pass, nil).json(t, &g)
	call(t, s, http.MethodGet, strings.TrimPrefix(a.header.Get("Location"), "/api/v2.0"), admin, pass, nil).json(t, &p)
	if g.Scope != "g" || p.Scope != "p" || p.ProjectID != pid {
		t.Fatalf("labels %+v %+v", g, p)
	}

	const art = "/projects/p/repositories/app/artifacts/1"
	want(t, call(t, s, http.MethodPost, art+"/labels", admin, pass, map[string]any{"id": g.ID}), http.StatusOK)
	msg := wantError(t, call(t, s, http.MethodPost, art+"/labels", admin, pass, map[string]any{"id": g.ID}), http.StatusConflict, "CONFLICT")
	if !strings.HasPrefix(msg, "label ") || !strings.Contains(msg, "is already added to the artifact") {
		t.Errorf("message %q", msg)
	}
	want(t, call(t, s, http.MethodPost, art+"/labels", admin, pass, map[string]any{"id": p.ID}), http.StatusOK)
	wantError(t, call(t, s, http.MethodPost, art+"/labels", admin, pass, map[string]any{"id": 9999}), http.StatusNotFound, "NOT_FOUND")

	var withLabels struct {
		Labels []struct {
			Name, Scope string
		}
	}
	call(t, s, http.MethodGet, art+"?with_label=true", admin, pass, nil).json(t, &withLabels)
	if len(withLabels.Labels) != 2 || withLabels.Labels[0].Name != "promoted" {
		t.Errorf("labels %+v", withLabels)
	}
	if b := call(t, s, http.MethodGet, art, admin, pass, nil).body; !strings.Contains(string(b), `"labels":null`) {
		t.Errorf("labels without with_label: %s", b)
	}
	want(t, call(t, s, http.MethodDelete, art+"/labels/"+itoa(g.ID), admin, pass, nil), http.StatusOK)
	wantError(t, call(t, s, http.MethodDelete, art+"/labels/"+itoa(g.ID), admin, pass, nil), http.StatusNotFound, "NOT_FOUND")
	if n := rec.count(); n != before {
		t.Errorf("labels fired %d events", n-before)
	}
	// A plain user may not create a global label.
	wantError(t, call(t, s, http.MethodPost, "/labels", "", "", map[string]any{"name": "x", "scope": "g"}), http.StatusUnauthorized, "UNAUTHORIZED")
}
