package harbortest_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestWebhookPolicies(t *testing.T) {
	s := standIn(t, nil)
	id := s.CreateProject(t, "p", false, nil)
	body := map[string]any{
		"name": "harborflow", "enabled": true, "event_types": []string{"PUSH_ARTIFACT", "SCANNING_COMPLETED"},
		"targets": []map[string]any{{"type": "http", "address": "https://bridge.example/hooks/harbor?x=1", "auth_header": "Bearer s3cr3t"}},
	}
	a := call(t, s, http.MethodPost, "/projects/p/webhook/policies", admin, pass, body)
	want(t, a, http.StatusCreated)
	loc := a.header.Get("Location")
	if !strings.HasPrefix(loc, "/api/v2.0/projects/p/webhook/policies/") {
		t.Fatalf("Location %q", loc)
	}
	wantError(t, call(t, s, http.MethodPost, "/projects/p/webhook/policies", admin, pass, body), http.StatusConflict, "CONFLICT")

	var pols []struct {
		ID         int64
		Name       string
		ProjectID  int64 `json:"project_id"`
		Enabled    bool
		EventTypes []string `json:"event_types"`
		Creator    string
		Targets    []struct {
			Type, Address string
			AuthHeader    string `json:"auth_header"`
			PayloadFormat string `json:"payload_format"`
		}
	}
	a = call(t, s, http.MethodGet, "/projects/p/webhook/policies", admin, pass, nil)
	a.json(t, &pols)
	if a.header.Get("X-Total-Count") != "1" || len(pols) != 1 {
		t.Fatalf("policies %s", a.body)
	}
	pol := pols[0]
	// §1.1: an empty http payload_format is stored as Default, the address verbatim; §7: auth_header in clear.
	if pol.Targets[0].PayloadFormat != "Default" || pol.Targets[0].AuthHeader != "Bearer s3cr3t" ||
		pol.Targets[0].Address != "https://bridge.example/hooks/harbor?x=1" || pol.ProjectID != id || pol.Creator != admin || !pol.Enabled {
		t.Errorf("policy %+v", pol)
	}
	// By project id too.
	want(t, call(t, s, http.MethodGet, strings.TrimPrefix(loc, "/api/v2.0"), admin, pass, nil), http.StatusOK)

	body["targets"] = []map[string]any{{"type": "http", "address": "http://r.example/h", "payload_format": "CloudEvents"}}
	body["enabled"] = false
	want(t, call(t, s, http.MethodPut, strings.TrimPrefix(loc, "/api/v2.0"), admin, pass, body), http.StatusOK)
	call(t, s, http.MethodGet, "/projects/p/webhook/policies", admin, pass, nil).json(t, &pols)
	if pols[0].Targets[0].PayloadFormat != "CloudEvents" || pols[0].Enabled {
		t.Errorf("updated policy %+v", pols[0])
	}

	bad := func(change func(m map[string]any)) answer {
		m := map[string]any{"name": "other", "enabled": true, "event_types": []string{"PUSH_ARTIFACT"},
			"targets": []map[string]any{{"type": "http", "address": "http://r.example/h"}}}
		change(m)
		return call(t, s, http.MethodPost, "/projects/p/webhook/policies", admin, pass, m)
	}
	wantError(t, bad(func(m map[string]any) { m["event_types"] = []string{"CREATE_TAG"} }), http.StatusBadRequest, "BAD_REQUEST")
	wantError(t, bad(func(m map[string]any) { m["event_types"] = []string{} }), http.StatusBadRequest, "BAD_REQUEST")
	wantError(t, bad(func(m map[string]any) {
		m["targets"] = []map[string]any{{"type": "http", "address": "ftp://r.example/h"}}
	}), http.StatusBadRequest, "BAD_REQUEST")
	wantError(t, bad(func(m map[string]any) {
		m["targets"] = []map[string]any{{"type": "http", "address": "http://r.example/h", "payload_format": "XML"}}
	}), http.StatusBadRequest, "BAD_REQUEST")
	want(t, bad(func(m map[string]any) {}), http.StatusCreated)

	// §7: there is no /test endpoint in 2.13.
	want(t, call(t, s, http.MethodPost, "/projects/p/webhook/policies/test", admin, pass, body), http.StatusMethodNotAllowed)

	want(t, call(t, s, http.MethodDelete, strings.TrimPrefix(loc, "/api/v2.0"), admin, pass, nil), http.StatusOK)
	wantError(t, call(t, s, http.MethodGet, strings.TrimPrefix(loc, "/api/v2.0"), admin, pass, nil), http.StatusNotFound, "NOT_FOUND")
}
