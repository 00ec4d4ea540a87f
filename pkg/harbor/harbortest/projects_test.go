package harbortest_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestProjects(t *testing.T) {
	s := standIn(t, nil)
	a := call(t, s, http.MethodPost, "/projects", admin, pass, map[string]any{
		"project_name": "wso2-prod", "metadata": map[string]string{"public": "false", "auto_scan": "true"}})
	want(t, a, http.StatusCreated)
	loc := a.header.Get("Location")
	if !strings.HasPrefix(loc, "/api/v2.0/projects/") {
		t.Fatalf("Location %q", loc)
	}
	id := strings.TrimPrefix(loc, "/api/v2.0/projects/")

	var p struct {
		ProjectID int64 `json:"project_id"`
		Name      string
		Metadata  map[string]string
	}
	call(t, s, http.MethodGet, "/projects/"+id, admin, pass, nil).json(t, &p)
	if p.Name != "wso2-prod" || p.Metadata["auto_scan"] != "true" || p.Metadata["public"] != "false" || fmt.Sprint(p.ProjectID) != id {
		t.Errorf("project %+v", p)
	}
	want(t, call(t, s, http.MethodGet, "/projects/wso2-prod", admin, pass, nil), http.StatusOK)

	// HARBOR.md §7: duplicate 409, upper case 400, a boolean metadata value 422.
	wantError(t, call(t, s, http.MethodPost, "/projects", admin, pass, map[string]any{"project_name": "wso2-prod"}), http.StatusConflict, "CONFLICT")
	wantError(t, call(t, s, http.MethodPost, "/projects", admin, pass, map[string]any{"project_name": "Upper"}), http.StatusBadRequest, "BAD_REQUEST")
	wantError(t, call(t, s, http.MethodPost, "/projects", admin, pass,
		map[string]any{"project_name": "typed", "metadata": map[string]any{"public": false}}), http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY")
	wantError(t, call(t, s, http.MethodPost, "/projects", "", "", map[string]any{"project_name": "anon"}), http.StatusUnauthorized, "UNAUTHORIZED")

	// A project named by a number is found by name only with X-Is-Resource-Name.
	want(t, call(t, s, http.MethodPost, "/projects", admin, pass, map[string]any{"project_name": "123"}), http.StatusCreated)
	wantError(t, call(t, s, http.MethodGet, "/projects/123", admin, pass, nil), http.StatusNotFound, "NOT_FOUND")
	want(t, call(t, s, http.MethodGet, "/projects/123", admin, pass, nil, "X-Is-Resource-Name", "true"), http.StatusOK)

	// Metadata.
	want(t, call(t, s, http.MethodPut, "/projects/"+id+"/metadatas/auto_scan", admin, pass, map[string]string{"auto_scan": "false"}), http.StatusOK)
	var md map[string]string
	call(t, s, http.MethodGet, "/projects/"+id+"/metadatas", admin, pass, nil).json(t, &md)
	if md["auto_scan"] != "false" {
		t.Errorf("metadata %v", md)
	}

	want(t, call(t, s, http.MethodDelete, "/projects/"+id, admin, pass, nil), http.StatusOK)
	wantError(t, call(t, s, http.MethodGet, "/projects/"+id, admin, pass, nil), http.StatusNotFound, "NOT_FOUND")
}

// HARBOR.md §3.1: page_size is at most 100 (422 beyond); X-Total-Count and Link in Harbor's form.
func TestProjectPaging(t *testing.T) {
	s := standIn(t, nil)
	for i := range 24 {
		s.CreateProject(t, fmt.Sprintf("p%02d", i), true, nil)
	}
	wantError(t, call(t, s, http.MethodGet, "/projects?page_size=101", admin, pass, nil), http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY")
	want(t, call(t, s, http.MethodGet, "/projects?page_size=100", admin, pass, nil), http.StatusOK)

	a := call(t, s, http.MethodGet, "/projects?page=2&page_size=10", admin, pass, nil)
	want(t, a, http.StatusOK)
	var list []struct{ Name string }
	a.json(t, &list)
	if len(list) != 10 || list[0].Name != "p09" {
		t.Errorf("page 2: %v", list)
	}
	if got := a.header.Get("X-Total-Count"); got != "25" { // and library
		t.Errorf("X-Total-Count %s", got)
	}
	wantLink := `</api/v2.0/projects?page=1&page_size=10>; rel="prev" , </api/v2.0/projects?page=3&page_size=10>; rel="next"`
	if got := a.header.Get("Link"); got != wantLink {
		t.Errorf("Link %q, want %q", got, wantLink)
	}
	call(t, s, http.MethodGet, "/projects", admin, pass, nil).json(t, &list)
	if len(list) != 10 {
		t.Errorf("default page size gave %d", len(list))
	}
	call(t, s, http.MethodGet, "/projects?q=name%3D~p1", admin, pass, nil).json(t, &list)
	if len(list) != 10 || list[0].Name != "p10" {
		t.Errorf("q=name=~p1: %v", list)
	}
}
