package harbortest_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// HARBOR.md §1.6: a multi-arch push through the front is N+1 PUSH_ARTIFACT: each platform manifest by digest
// (tag = its digest), then the index with its tag.
func TestMultiArchPushEvents(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	pid := s.CreateProject(t, "wso2", false, nil)
	subscribe(t, s, "wso2", "PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT")
	src := registrytest.New(t)
	idx := src.PushIndex(t, "src/am:4.2.0.15", twoPlatforms())

	push(t, s, src, "src/am:4.2.0.15", "wso2/base/am:4.2.0.15")
	evs := ofType(rec.wait(t, 3), "PUSH_ARTIFACT")
	if len(evs) != 3 {
		t.Fatalf("%d PUSH_ARTIFACT, want 3: %+v", len(evs), evs)
	}
	// The client pushes the platform manifests in any order; the index comes last.
	children := []string{idx.Children[0].Digest, idx.Children[1].Digest}
	for i, e := range evs[:2] {
		if !slices.Contains(children, e.Digest) || e.Tag != e.Digest {
			t.Errorf("event %d: digest %s tag %s, want a child by digest %v", i, e.Digest, e.Tag, children)
		}
	}
	if evs[0].Digest == evs[1].Digest {
		t.Errorf("one child twice: %s", evs[0].Digest)
	}
	last := evs[2]
	if last.Digest != idx.Digest || last.Tag != "4.2.0.15" {
		t.Errorf("index event: digest %s tag %s", last.Digest, last.Tag)
	}
	if last.Operator != admin || last.ProjectID != pid || last.Project != "wso2" || last.Public ||
		last.Repository != "wso2/base/am" || last.RepoCreated.IsZero() || last.RequestID == "" || last.OccurAt.IsZero() {
		t.Errorf("index event %+v", last)
	}
}

// HARBOR.md §7: a re-push of the same tag and digest fires again; GET fires PULL_ARTIFACT with the reference
// pulled, HEAD nothing; an anonymous pull has no operator.
func TestRepushAndPullEvents(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	s.CreateProject(t, "pub", true, nil)
	subscribe(t, s, "pub", "PUSH_ARTIFACT", "PULL_ARTIFACT")
	src := registrytest.New(t)
	img := src.PushImage(t, "src/app:1", registrytest.Image{Labels: map[string]string{"a": "b"}})
	mt, body := src.ReadManifest(t, "src/app:1")
	push(t, s, src, "src/app:1", "pub/app:1")
	rec.wait(t, 1)

	// The same manifest again, by tag, with basic auth on /v2/.
	a := raw(t, s, http.MethodPut, "/v2/pub/app/manifests/1", admin, pass, body, "Content-Type", mt)
	want(t, a, http.StatusCreated)
	evs := rec.wait(t, 2)
	if evs[1].Type != "PUSH_ARTIFACT" || evs[1].Tag != "1" || evs[1].Digest != img.Digest {
		t.Errorf("re-push event %+v", evs[1])
	}

	ctx := context.Background()
	rc := client(s, nil, admin, pass)
	byTag, _ := ref.New(s.Host() + "/pub/app:1")
	if _, err := rc.ManifestHead(ctx, byTag); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.ManifestGet(ctx, byTag); err != nil {
		t.Fatal(err)
	}
	anon := client(s, nil, "", "")
	byDigest, _ := ref.New(s.Host() + "/pub/app@" + img.Digest)
	if _, err := anon.ManifestGet(ctx, byDigest); err != nil {
		t.Fatal(err)
	}
	evs = rec.wait(t, 4)
	if len(evs) != 4 {
		t.Fatalf("%d events, want 4 (HEAD fires nothing): %+v", len(evs), evs)
	}
	if e := evs[2]; e.Type != "PULL_ARTIFACT" || e.Tag != "1" || e.Operator != admin {
		t.Errorf("pull by tag %+v", e)
	}
	if e := evs[3]; e.Type != "PULL_ARTIFACT" || e.Tag != img.Digest || e.Operator != "" {
		t.Errorf("anonymous pull by digest %+v", e)
	}
}

// HARBOR.md §7: DELETE_ARTIFACT for the root only, naming its newest tag; a registry DELETE is 202, by tag 400.
func TestDeleteEvents(t *testing.T) {
	clock := &stepClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := newRecorder()
	s := standIn(t, rec, harbortest.WithClock(clock.now))
	s.CreateProject(t, "p", false, nil)
	subscribe(t, s, "p", "DELETE_ARTIFACT")
	src := registrytest.New(t)
	src.PushIndex(t, "src/multi:a", twoPlatforms())
	push(t, s, src, "src/multi:a", "p/multi:a")
	want(t, call(t, s, http.MethodPost, "/projects/p/repositories/multi/artifacts/a/tags", admin, pass, map[string]string{"name": "b"}), http.StatusCreated)

	want(t, call(t, s, http.MethodDelete, "/projects/p/repositories/multi/artifacts/a", admin, pass, nil), http.StatusOK)
	evs := rec.wait(t, 1)
	if len(evs) != 1 || evs[0].Tag != "b" {
		t.Fatalf("events %+v, want one DELETE_ARTIFACT naming b", evs)
	}
	a := call(t, s, http.MethodGet, "/projects/p/repositories/multi/artifacts", admin, pass, nil)
	if string(a.body) != "[]" || a.header.Get("X-Total-Count") != "0" {
		t.Errorf("after delete: %s (%s)", a.body, a.header.Get("X-Total-Count"))
	}

	img := src.PushImage(t, "src/single:1", registrytest.Image{})
	push(t, s, src, "src/single:1", "p/single:1")
	wantError(t, raw(t, s, http.MethodDelete, "/v2/p/single/manifests/1", admin, pass, nil), http.StatusBadRequest, "UNSUPPORTED")
	want(t, raw(t, s, http.MethodDelete, "/v2/p/single/manifests/"+img.Digest, admin, pass, nil), http.StatusAccepted)
	evs = rec.wait(t, 2)
	if evs[1].Tag != "1" || evs[1].Digest != img.Digest {
		t.Errorf("registry delete event %+v", evs[1])
	}
	want(t, raw(t, s, http.MethodGet, "/v2/p/single/manifests/1", admin, pass, nil), http.StatusNotFound)
}

// HARBOR.md §1.6, §7: a copy fires PUSH_ARTIFACT for the root with the source's newest tag, and one for each
// child new at the destination; every tag is copied; a tag added through the API fires nothing.
func TestCopy(t *testing.T) {
	clock := &stepClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := newRecorder()
	s := standIn(t, rec, harbortest.WithClock(clock.now))
	s.CreateProject(t, "stage", false, nil)
	s.CreateProject(t, "prod", false, nil)
	subscribe(t, s, "prod", "PUSH_ARTIFACT")
	src := registrytest.New(t)
	idx := src.PushIndex(t, "src/am:4.2.0.16", twoPlatforms())
	push(t, s, src, "src/am:4.2.0.16", "stage/am:4.2.0.16")
	want(t, call(t, s, http.MethodPost, "/projects/stage/repositories/am/artifacts/4.2.0.16/tags", admin, pass, map[string]string{"name": "latest"}), http.StatusCreated)
	if n := rec.count(); n != 0 {
		t.Fatalf("%d events from another project or a tag added through the API", n)
	}

	a := call(t, s, http.MethodPost, "/projects/prod/repositories/am/artifacts?from=stage/am:4.2.0.16", admin, pass, nil)
	want(t, a, http.StatusCreated)
	if got := a.header.Get("Location"); got != "/api/v2.0/projects/prod/repositories/am/artifacts/4.2.0.16" {
		t.Errorf("Location %q", got)
	}
	evs := rec.wait(t, 3)
	var tags []string
	for _, e := range evs {
		tags = append(tags, e.Tag)
		if e.Operator != admin || e.Project != "prod" || e.Repository != "prod/am" {
			t.Errorf("copy event %+v", e)
		}
	}
	wantTags := []string{idx.Children[0].Digest, idx.Children[1].Digest, "latest"}
	if !slices.Equal(tags, wantTags) {
		t.Errorf("copy event tags %v, want %v", tags, wantTags)
	}

	var arts []struct {
		Digest string
		Tags   []struct{ Name string }
	}
	call(t, s, http.MethodGet, "/projects/prod/repositories/am/artifacts", admin, pass, nil).json(t, &arts)
	if len(arts) != 1 || arts[0].Digest != idx.Digest || len(arts[0].Tags) != 2 || arts[0].Tags[0].Name != "latest" {
		t.Errorf("copied artifacts %+v", arts)
	}
	// The copy is pullable through the front, children included.
	rc := client(s, nil, admin, pass)
	r, _ := ref.New(s.Host() + "/prod/am@" + idx.Children[1].Digest)
	if _, err := rc.ManifestGet(context.Background(), r); err != nil {
		t.Errorf("pulling a copied child: %v", err)
	}

	// Again, by digest: the children exist, so only the root fires, still with the newest tag.
	want(t, call(t, s, http.MethodPost, "/projects/prod/repositories/am/artifacts?from=stage/am@"+idx.Digest, admin, pass, nil), http.StatusCreated)
	evs = rec.wait(t, 4)
	if len(evs) != 4 || evs[3].Tag != "latest" || evs[3].Digest != idx.Digest {
		t.Errorf("second copy events %+v", evs[3:])
	}

	wantError(t, call(t, s, http.MethodPost, "/projects/prod/repositories/am/artifacts?from=stage/am:nope", admin, pass, nil), http.StatusBadRequest, "BAD_REQUEST")
	wantError(t, call(t, s, http.MethodPost, "/projects/nope/repositories/am/artifacts?from=stage/am:latest", admin, pass, nil), http.StatusNotFound, "NOT_FOUND")
}

// stepClock advances a second on every reading, so that "newest" is never a tie.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}
