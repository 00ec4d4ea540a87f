package harbortest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

type artifactJSON struct {
	ID                int64          `json:"id"`
	Type              string         `json:"type"`
	Digest            string         `json:"digest"`
	MediaType         string         `json:"media_type"`
	ManifestMediaType string         `json:"manifest_media_type"`
	RepositoryName    string         `json:"repository_name"`
	ExtraAttrs        map[string]any `json:"extra_attrs"`
	References        []struct {
		ChildDigest string `json:"child_digest"`
		Platform    struct{ OS, Architecture string }
	} `json:"references"`
	Tags []struct {
		Name      string
		Immutable bool
	} `json:"tags"`
}

// HARBOR.md §7: lists count top-level artifacts; an index has references and extra_attrs null, type IMAGE; an
// image has extra_attrs.config.Labels; tags, labels and accessories null unless asked for.
func TestArtifacts(t *testing.T) {
	s := standIn(t, nil)
	s.CreateProject(t, "wso2", false, nil)
	src := registrytest.New(t)
	idx := src.PushIndex(t, "src/am:4.2.0.15", twoPlatforms())
	img := src.PushImage(t, "src/is:7.1.0.1", registrytest.Image{Labels: map[string]string{"update_level": "3"}})
	push(t, s, src, "src/am:4.2.0.15", "wso2/base/am:4.2.0.15")
	push(t, s, src, "src/is:7.1.0.1", "wso2/base/am:7.1.0.1")
	untagged := src.PushImage(t, "src/x", registrytest.Image{Layer: "untagged"})
	push(t, s, src, "src/x@"+untagged.Digest, "wso2/base/am@"+untagged.Digest)

	const list = "/projects/wso2/repositories/base%252Fam/artifacts"
	a := call(t, s, http.MethodGet, list, admin, pass, nil)
	want(t, a, http.StatusOK)
	if got := a.header.Get("X-Total-Count"); got != "3" {
		t.Errorf("X-Total-Count %s, want 3 (index children hidden)", got)
	}
	var arts []artifactJSON
	a.json(t, &arts)
	if len(arts) != 3 || arts[0].Digest != untagged.Digest || arts[2].Digest != idx.Digest {
		t.Fatalf("artifacts %+v", arts)
	}
	if !strings.Contains(string(a.body), `"accessories":null`) || !strings.Contains(string(a.body), `"labels":null`) {
		t.Errorf("accessories and labels not null: %s", a.body)
	}

	var got artifactJSON
	a = call(t, s, http.MethodGet, "/projects/wso2/repositories/base%252Fam/artifacts/4.2.0.15", admin, pass, nil)
	a.json(t, &got)
	if got.Type != "IMAGE" || got.ExtraAttrs != nil || !strings.Contains(string(a.body), `"extra_attrs":null`) ||
		len(got.References) != 2 || got.References[1].ChildDigest != idx.Children[1].Digest ||
		got.References[1].Platform.Architecture != "arm64" || got.RepositoryName != "wso2/base/am" {
		t.Errorf("index %s", a.body)
	}
	call(t, s, http.MethodGet, "/projects/wso2/repositories/base%252Fam/artifacts/"+img.Digest, admin, pass, nil).json(t, &got)
	labels, _ := got.ExtraAttrs["config"].(map[string]any)["Labels"].(map[string]any)
	if got.Type != "IMAGE" || labels["update_level"] != "3" || got.MediaType != registrytest.MediaOCIConfig ||
		got.ManifestMediaType != registrytest.MediaOCIManifest || len(got.Tags) != 1 || got.Tags[0].Name != "7.1.0.1" {
		t.Errorf("image %+v", got)
	}
	// A child by digest shows itself.
	want(t, call(t, s, http.MethodGet, "/projects/wso2/repositories/base%252Fam/artifacts/"+idx.Children[0].Digest, admin, pass, nil), http.StatusOK)

	for q, n := range map[string]int{"tags%3D*": 2, "tags%3Dnil": 1, "tags%3D7.1.0.1": 1, "digest%3D" + idx.Digest: 1, "media_type%3D" + url.QueryEscape(registrytest.MediaOCIIndex): 1} {
		a := call(t, s, http.MethodGet, list+"?q="+q, admin, pass, nil)
		if got := a.header.Get("X-Total-Count"); got != fmt.Sprint(n) {
			t.Errorf("q=%s: X-Total-Count %s, want %d", q, got, n)
		}
	}
	call(t, s, http.MethodGet, list+"?with_tag=false", admin, pass, nil).json(t, &arts)
	if len(arts[1].Tags) != 0 {
		t.Errorf("with_tag=false still has tags")
	}
	wantError(t, call(t, s, http.MethodGet, list+"?page_size=101", admin, pass, nil), http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY")

	// Missing repository or project: 200 [] (HARBOR.md §7); a missing artifact: 404.
	for _, p := range []string{"/projects/wso2/repositories/nope/artifacts", "/projects/nope/repositories/nope/artifacts"} {
		a := call(t, s, http.MethodGet, p, admin, pass, nil)
		want(t, a, http.StatusOK)
		if string(a.body) != "[]" || a.header.Get("X-Total-Count") != "0" {
			t.Errorf("%s: %s X-Total-Count %s", p, a.body, a.header.Get("X-Total-Count"))
		}
	}
	wantError(t, call(t, s, http.MethodGet, list+"/nope", admin, pass, nil), http.StatusNotFound, "NOT_FOUND")

	var repos []struct {
		Name          string
		ArtifactCount int64 `json:"artifact_count"`
	}
	call(t, s, http.MethodGet, "/projects/wso2/repositories", admin, pass, nil).json(t, &repos)
	if len(repos) != 1 || repos[0].Name != "wso2/base/am" || repos[0].ArtifactCount != 3 {
		t.Errorf("repositories %+v", repos)
	}
}

// HARBOR.md §7: POST …/tags is 201 without Location, 409 for a tag anywhere in the repository; tags never move.
func TestTags(t *testing.T) {
	s := standIn(t, nil)
	s.CreateProject(t, "p", false, nil)
	src := registrytest.New(t)
	src.PushImage(t, "src/a:1", registrytest.Image{Layer: "a"})
	src.PushImage(t, "src/b:2", registrytest.Image{Layer: "b"})
	push(t, s, src, "src/a:1", "p/app:1")
	push(t, s, src, "src/b:2", "p/app:2")

	a := call(t, s, http.MethodPost, "/projects/p/repositories/app/artifacts/1/tags", admin, pass, map[string]string{"name": "stable"})
	want(t, a, http.StatusCreated)
	if loc := a.header.Get("Location"); loc != "" {
		t.Errorf("Location %q on a tag", loc)
	}
	wantError(t, call(t, s, http.MethodPost, "/projects/p/repositories/app/artifacts/1/tags", admin, pass, map[string]string{"name": "stable"}), http.StatusConflict, "CONFLICT")
	wantError(t, call(t, s, http.MethodPost, "/projects/p/repositories/app/artifacts/2/tags", admin, pass, map[string]string{"name": "stable"}), http.StatusConflict, "CONFLICT")

	var tags []struct{ Name string }
	call(t, s, http.MethodGet, "/projects/p/repositories/app/artifacts/1/tags", admin, pass, nil).json(t, &tags)
	if len(tags) != 2 || tags[0].Name != "stable" && tags[1].Name != "stable" {
		t.Errorf("tags %+v", tags)
	}
	// The registry front resolves the new tag.
	want(t, raw(t, s, http.MethodGet, "/v2/p/app/manifests/stable", admin, pass, nil, "Accept", registrytest.MediaOCIManifest), http.StatusOK)
	var list struct{ Tags []string }
	raw(t, s, http.MethodGet, "/v2/p/app/tags/list", admin, pass, nil).json(t, &list)
	if strings.Join(list.Tags, ",") != "1,2,stable" {
		t.Errorf("tags/list %v", list.Tags)
	}

	want(t, call(t, s, http.MethodDelete, "/projects/p/repositories/app/artifacts/1/tags/stable", admin, pass, nil), http.StatusOK)
	wantError(t, call(t, s, http.MethodDelete, "/projects/p/repositories/app/artifacts/1/tags/stable", admin, pass, nil), http.StatusNotFound, "NOT_FOUND")
	want(t, raw(t, s, http.MethodGet, "/v2/p/app/manifests/stable", admin, pass, nil), http.StatusNotFound)
}

// An artifact deleted and pushed again at once is there, whole: the delete reaches the backing registry
// before it is answered, so it cannot undo the push that follows. And a registry tag list of n=0 is an empty
// page, not a broken connection.
func TestDeleteThenPushAgain(t *testing.T) {
	s := standIn(t, nil)
	s.CreateProject(t, "wso2", false, nil)
	src := registrytest.New(t)
	img := src.PushImage(t, "src/am:4.2.0.15", registrytest.Image{Labels: map[string]string{"update_level": "15"}})
	for round := range 5 {
		push(t, s, src, "src/am:4.2.0.15", "wso2/am:4.2.0.15")
		want(t, call(t, s, http.MethodDelete, "/projects/wso2/repositories/am/artifacts/"+img.Digest, admin, pass, nil), http.StatusOK)
		push(t, s, src, "src/am:4.2.0.15", "wso2/am:4.2.0.15")
		a := raw(t, s, http.MethodGet, "/v2/wso2/am/manifests/"+img.Digest, admin, pass, nil)
		if a.status != http.StatusOK {
			t.Fatalf("round %d: the manifest pushed again after its delete: %d %s", round, a.status, a.body)
		}
		want(t, call(t, s, http.MethodDelete, "/projects/wso2/repositories/am/artifacts/4.2.0.15", admin, pass, nil), http.StatusOK)
	}
	push(t, s, src, "src/am:4.2.0.15", "wso2/am:4.2.0.15")
	a := raw(t, s, http.MethodGet, "/v2/wso2/am/tags/list?n=0", admin, pass, nil)
	if a.status != http.StatusOK || !strings.Contains(string(a.body), `"tags":[]`) || a.header.Get("Link") != "" {
		t.Errorf("tags/list?n=0: %d %s, Link %q", a.status, a.body, a.header.Get("Link"))
	}
}
