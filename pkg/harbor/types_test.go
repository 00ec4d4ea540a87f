package harbor_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/harbor"
)

// What Harbor answers (HARBOR.md §7, §7.1) arrives in the client's types: config labels from extra_attrs,
// index references, scan overview, accessories, immutable tags, labels; project metadata as strings.
func TestResultsCarryWhatHarborSent(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/artifacts/4.2.0"):
			a := artifactJSON(7)
			a["tags"] = []map[string]any{{"name": "4.2.0", "immutable": true}, {"name": "4.2.0.7"}}
			a["labels"] = []map[string]any{{"id": 1, "name": "promoted", "color": "#00FF00", "scope": "g"}}
			a["accessories"] = []map[string]any{{"id": 9, "artifact_id": 10, "type": "signature.cosign",
				"digest": "sha256:aa", "subject_artifact_digest": a["digest"], "subject_artifact_repo": "wso2/base/am"}}
			a["scan_overview"] = map[string]any{"application/vnd.security.vulnerability.report; version=1.1": map[string]any{
				"report_id": "r1", "scan_status": "Success", "severity": "High", "duration": 4,
				"start_time": "2026-12-01T10:00:00.000Z", "end_time": "2026-12-01T10:00:04.000Z", "complete_percent": 100,
				"summary": map[string]any{"total": 3, "fixable": 1, "summary": map[string]int{"High": 1, "Low": 2}},
				"scanner": map[string]any{"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50"},
			}}
			writeJSON(w, 200, -1, a)
		case strings.HasSuffix(r.URL.Path, "/artifacts/4.2.0-multi"):
			writeJSON(w, 200, -1, map[string]any{"digest": "sha256:ii", "type": "IMAGE", "extra_attrs": nil,
				"references": []map[string]any{{"child_digest": "sha256:c1", "platform": map[string]any{"os": "linux", "architecture": "arm64", "variant": "v8"}}}})
		case strings.HasSuffix(r.URL.Path, "/projects/wso2"):
			writeJSON(w, 200, -1, map[string]any{"project_id": 4, "name": "wso2", "metadata": map[string]string{"public": "false", "auto_scan": "true"}})
		}
	})
	c := f.client(t)
	ctx := context.Background()
	a, err := c.Artifact(ctx, "wso2", "base/am", "4.2.0", harbor.WithLabels(), harbor.WithScanOverview(), harbor.WithAccessories(), harbor.WithImmutableStatus())
	if err != nil {
		t.Fatal(err)
	}
	q := f.requests()[0].Query
	for _, p := range []string{"with_label=true", "with_scan_overview=true", "with_accessory=true", "with_immutable_status=true", "with_tag=true"} {
		if !strings.Contains(q, p) {
			t.Errorf("query %s lacks %s", q, p)
		}
	}
	if a.ConfigLabels["update_level"] != "7" || a.Repository != "wso2/base/am" || a.PushTime.IsZero() || !a.PullTime.IsZero() {
		t.Errorf("artifact = %+v", a)
	}
	if got := a.TagNames(); len(got) != 2 || got[0] != "4.2.0" || !a.Tags[0].Immutable || a.Tags[1].Immutable {
		t.Errorf("tags = %+v", a.Tags)
	}
	if len(a.Labels) != 1 || a.Labels[0].Name != "promoted" || len(a.Accessories) != 1 || a.Accessories[0].Type != "signature.cosign" {
		t.Errorf("labels %+v, accessories %+v", a.Labels, a.Accessories)
	}
	s := a.ScanOverview["application/vnd.security.vulnerability.report; version=1.1"]
	if s.Status != "Success" || s.Severity != "High" || s.BySeverity["Low"] != 2 || s.Scanner.Name != "Trivy" || s.Duration.Seconds() != 4 {
		t.Errorf("scan = %+v", s)
	}
	idx, err := c.Artifact(ctx, "wso2", "base/am", "4.2.0-multi")
	if err != nil {
		t.Fatal(err)
	}
	if idx.ConfigLabels != nil || len(idx.References) != 1 || idx.References[0].Architecture != "arm64" || idx.References[0].Variant != "v8" {
		t.Errorf("index = %+v", idx)
	}
	p, err := c.Project(ctx, "wso2")
	if err != nil {
		t.Fatal(err)
	}
	if !p.AutoScan() || p.Public() || p.ID != 4 {
		t.Errorf("project = %+v", p)
	}
}

// Creates return the id from Location; an update sends the whole policy, auth header included.
func TestCreatesReturnTheIDFromLocation(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/webhook/policies"):
			w.Header().Set("Location", "/api/v2.0/projects/wso2/webhook/policies/12")
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/projects"):
			w.Header().Set("Location", "/api/v2.0/projects/7")
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/labels"):
			w.Header().Set("Location", "/api/v2.0/labels/3")
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/immutabletagrules"):
			// no Location: the client says so
		case r.Method == http.MethodPut:
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	c := f.client(t)
	ctx := context.Background()
	pol := harbor.WebhookPolicy{Name: "harborflow", Enabled: true, EventTypes: []string{"PUSH_ARTIFACT"},
		Targets: []harbor.WebhookTarget{{Address: "https://hooks.acme.example/harbor", AuthHeader: "Bearer s3cr3t", PayloadFormat: harbor.PayloadCloudEvents}}}
	id, err := c.CreateWebhookPolicy(ctx, "wso2", pol)
	if err != nil || id != 12 {
		t.Fatalf("CreateWebhookPolicy = %d, %v", id, err)
	}
	pol.ID = id
	if err := c.UpdateWebhookPolicy(ctx, "wso2", pol); err != nil {
		t.Fatal(err)
	}
	if id, err := c.CreateProject(ctx, harbor.ProjectSpec{Name: "wso2-prod", AutoScan: true}); err != nil || id != 7 {
		t.Errorf("CreateProject = %d, %v", id, err)
	}
	if id, err := c.CreateLabel(ctx, harbor.Label{Name: "promoted", Color: "#00FF00"}); err != nil || id != 3 {
		t.Errorf("CreateLabel = %d, %v", id, err)
	}
	if _, err := c.CreateImmutableRule(ctx, "wso2", harbor.ImmutableRule{}); err == nil || !strings.Contains(err.Error(), "Location") {
		t.Errorf("CreateImmutableRule without Location: %v", err)
	}
	reqs := f.requests()
	put := reqs[1]
	if put.Method != http.MethodPut || put.Path != "/api/v2.0/projects/wso2/webhook/policies/12" {
		t.Errorf("update: %s %s", put.Method, put.Path)
	}
	var body struct {
		Name    string `json:"name"`
		Targets []struct {
			Type          string `json:"type"`
			Address       string `json:"address"`
			AuthHeader    string `json:"auth_header"`
			PayloadFormat string `json:"payload_format"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(put.Body), &body); err != nil {
		t.Fatal(err)
	}
	if body.Name != "harborflow" || len(body.Targets) != 1 || body.Targets[0].AuthHeader != "Bearer s3cr3t" ||
		body.Targets[0].Type != "http" || body.Targets[0].PayloadFormat != "CloudEvents" {
		t.Errorf("update body: %s", put.Body)
	}
	var proj struct {
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(reqs[2].Body), &proj); err != nil {
		t.Fatal(err)
	}
	// Metadata values are strings: a JSON boolean is a 422 (HARBOR.md §7).
	if proj.Metadata["public"] != "false" || proj.Metadata["auto_scan"] != "true" {
		t.Errorf("create project body: %s", reqs[2].Body)
	}
}
