package harbortest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/regclient/regclient/types/ref"

	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

// A stand-in started with a data directory, as `harborflow dev harbor --data DIR` runs it, has its projects,
// artifacts and content again after a restart.
func TestStartWithDataDir(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := harbortest.Start(ctx, "127.0.0.1:0", harbortest.WithDataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	s.CreateProject(t, "keep", false, nil)
	src := registrytest.New(t)
	idx := src.PushIndex(t, "src/app:1", twoPlatforms())
	push(t, s, src, "src/app:1", "keep/app:1")
	want(t, call(t, s, http.MethodPost, "/projects/keep/webhook/policies", admin, pass, map[string]any{
		"name": "kept", "enabled": true, "event_types": []string{"PUSH_ARTIFACT"},
		"targets": []map[string]any{{"type": "http", "address": "http://127.0.0.1:1/"}}}), http.StatusCreated)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s, err = harbortest.Start(ctx, "127.0.0.1:0", harbortest.WithDataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var art struct {
		Digest string
		Tags   []struct{ Name string }
	}
	call(t, s, http.MethodGet, "/projects/keep/repositories/app/artifacts/1", admin, pass, nil).json(t, &art)
	if art.Digest != idx.Digest || len(art.Tags) != 1 {
		t.Errorf("after restart: %+v", art)
	}
	a := call(t, s, http.MethodGet, "/projects/keep/webhook/policies", admin, pass, nil)
	if a.header.Get("X-Total-Count") != "1" {
		t.Errorf("policies after restart: %s", a.body)
	}
	rc := client(s, nil, admin, pass)
	r, _ := ref.New(s.Host() + "/keep/app:1")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := rc.ManifestGet(cctx, r)
	if err != nil {
		t.Fatalf("pulling after restart: %v", err)
	}
	if m.GetDescriptor().Digest.String() != idx.Digest {
		t.Errorf("pulled %s", m.GetDescriptor().Digest)
	}
	// A fresh stand-in has library; a restarted one does not make it again.
	a = call(t, s, http.MethodGet, "/projects", admin, pass, nil)
	if a.header.Get("X-Total-Count") != "2" {
		t.Errorf("projects after restart: %s", a.body)
	}
}
