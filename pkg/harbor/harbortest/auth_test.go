package harbortest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// HARBOR.md §7: a wrong password is anonymous to the API, which still lists public projects and answers 401
// for a private one.
func TestWrongPasswordIsAnonymous(t *testing.T) {
	s := standIn(t, nil)
	s.CreateProject(t, "secret", false, nil)
	s.CreateProject(t, "open", true, nil)

	a := call(t, s, http.MethodGet, "/projects", admin, "wrong", nil)
	want(t, a, http.StatusOK)
	var list []struct{ Name string }
	a.json(t, &list)
	var names []string
	for _, p := range list {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "library,open" {
		t.Errorf("projects %v, want the public ones only", names)
	}

	a = call(t, s, http.MethodGet, "/projects/secret", admin, "wrong", nil)
	wantError(t, a, http.StatusUnauthorized, "UNAUTHORIZED")
	if got := string(a.body); got != `{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized"}]}` {
		t.Errorf("body %s", got)
	}
	want(t, call(t, s, http.MethodGet, "/projects/secret", admin, pass, nil), http.StatusOK)
	want(t, call(t, s, http.MethodGet, "/projects/open", "", "", nil), http.StatusOK)
}

func TestChangedAdminAndPlainUser(t *testing.T) {
	s := standIn(t, nil, harbortest.WithAdmin("root", "s3cret"), harbortest.WithUser("dev", "devpass"))
	s.CreateProject(t, "team", false, nil)
	want(t, call(t, s, http.MethodGet, "/projects/team", "root", "s3cret", nil), http.StatusOK)
	wantError(t, call(t, s, http.MethodGet, "/projects/team", admin, pass, nil), http.StatusUnauthorized, "UNAUTHORIZED")
	wantError(t, call(t, s, http.MethodGet, "/projects/team", "dev", "devpass", nil), http.StatusForbidden, "FORBIDDEN")

	policy := map[string]any{"name": "p", "enabled": true, "event_types": []string{"PUSH_ARTIFACT"},
		"targets": []map[string]any{{"type": "http", "address": "http://x.example/hook"}}}
	s.AddMember(t, "team", "dev", harbortest.RoleDeveloper)
	wantError(t, call(t, s, http.MethodPost, "/projects/team/webhook/policies", "dev", "devpass", policy), http.StatusForbidden, "FORBIDDEN")
	s.AddMember(t, "team", "dev", harbortest.RoleProjectAdmin)
	want(t, call(t, s, http.MethodPost, "/projects/team/webhook/policies", "dev", "devpass", policy), http.StatusCreated)

	// A project a plain user creates is theirs to manage.
	want(t, call(t, s, http.MethodPost, "/projects", "dev", "devpass", map[string]any{"project_name": "mine"}), http.StatusCreated)
	want(t, call(t, s, http.MethodPost, "/projects/mine/webhook/policies", "dev", "devpass", policy, "X-Is-Resource-Name", "true"), http.StatusCreated)
}

// HARBOR.md §7: /v2/ without credentials is a Bearer challenge naming the token service; basic auth and a
// token from the service are accepted.
func TestRegistryAuth(t *testing.T) {
	s := standIn(t, nil)
	a := raw(t, s, http.MethodGet, "/v2/", "", "", nil)
	wantError(t, a, http.StatusUnauthorized, "UNAUTHORIZED")
	wantChallenge := `Bearer realm="` + s.URL() + `/service/token",service="harbor-registry"`
	if got := a.header.Get("Www-Authenticate"); got != wantChallenge {
		t.Errorf("Www-Authenticate %q, want %q", got, wantChallenge)
	}
	want(t, raw(t, s, http.MethodGet, "/v2/", admin, pass, nil), http.StatusOK)
	want(t, raw(t, s, http.MethodGet, "/v2/", admin, "wrong", nil), http.StatusUnauthorized)

	tok := raw(t, s, http.MethodGet, "/service/token?service=harbor-registry&scope=repository:library/app:pull,push", admin, pass, nil)
	want(t, tok, http.StatusOK)
	var body struct{ Token string }
	if err := json.Unmarshal(tok.body, &body); err != nil || body.Token == "" {
		t.Fatalf("token answer %s: %v", tok.body, err)
	}
	want(t, raw(t, s, http.MethodGet, "/v2/", "", "", nil, "Authorization", "Bearer "+body.Token), http.StatusOK)
	wantError(t, raw(t, s, http.MethodGet, "/service/token?service=harbor-registry", admin, "wrong", nil), http.StatusUnauthorized, "UNAUTHORIZED")
	want(t, raw(t, s, http.MethodGet, "/v2/", "", "", nil, "Authorization", "Bearer nope"), http.StatusUnauthorized)

	// A private project's repository needs a user; anonymous gets a challenge with the scope.
	s.CreateProject(t, "private", false, nil)
	a = raw(t, s, http.MethodGet, "/v2/private/app/tags/list", "", "", nil)
	want(t, a, http.StatusUnauthorized)
	if got := a.header.Get("Www-Authenticate"); !strings.Contains(got, `scope="repository:private/app:pull"`) {
		t.Errorf("Www-Authenticate %q has no scope", got)
	}
}

func TestRequestID(t *testing.T) {
	s := standIn(t, nil)
	a := call(t, s, http.MethodGet, "/projects", "", "", nil, "X-Request-Id", "abc-123")
	if got := a.header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("X-Request-Id %q, want it echoed", got)
	}
	if got := a.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	a = call(t, s, http.MethodGet, "/projects/nope", admin, pass, nil)
	wantError(t, a, http.StatusNotFound, "NOT_FOUND")
	if a.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id made")
	}
}

// A push needs a role in the project: a plain user is refused through the token flow, a developer pushes
// and is the event's operator.
func TestPushNeedsARole(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec, harbortest.WithUser("dev", "devpass"))
	s.CreateProject(t, "team", false, nil)
	subscribe(t, s, "team", "PUSH_ARTIFACT")
	src := registrytest.New(t)
	src.PushImage(t, "src/app:1", registrytest.Image{})
	from, _ := ref.New(src.Host + "/src/app:1")
	to, _ := ref.New(s.Host() + "/team/app:1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client(s, src, "dev", "devpass").ImageCopy(ctx, from, to); err == nil {
		t.Fatal("a user without a role pushed")
	}
	a := raw(t, s, http.MethodPut, "/v2/team/app/manifests/1", "dev", "devpass", "{}", "Content-Type", registrytest.MediaOCIManifest)
	want(t, a, http.StatusUnauthorized)
	if got := a.header.Get("Www-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
		t.Errorf("Www-Authenticate %q", got)
	}

	s.AddMember(t, "team", "dev", harbortest.RoleDeveloper)
	if err := client(s, src, "dev", "devpass").ImageCopy(ctx, from, to); err != nil {
		t.Fatalf("a developer's push: %v", err)
	}
	if evs := rec.wait(t, 1); evs[0].Operator != "dev" || evs[0].Tag != "1" {
		t.Errorf("event %+v", evs[0])
	}
	// Deleting needs a maintainer.
	wantError(t, call(t, s, http.MethodDelete, "/projects/team/repositories/app/artifacts/1", "dev", "devpass", nil), http.StatusForbidden, "FORBIDDEN")
}
