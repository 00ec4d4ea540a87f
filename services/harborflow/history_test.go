package harborflow_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	harborflowv1 "github.com/harborflow/harborflow/proto/gen/harborflow/v1"
	"github.com/harborflow/harborflow/services/rebuilder"
)

func TestHistoryPrintsOneRepositoryOldestFirst(t *testing.T) {
	dir := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	path := writeConfig(t, dir, httpAddr, natsAddr)
	t.Setenv("HARBOR_WEBHOOK_AUTH", "Bearer h")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := startStages(t, cfg)
	b := connectBus(t, p.NATSURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := b.KeyValue(ctx, event.BucketImageHistory)
	if err != nil {
		t.Fatal(err)
	}
	level := func(n int64) *int64 { return &n }
	put := func(r *harborflowv1.ImageRecord) {
		if _, err := kv.Put(ctx, event.Key(r.Registry, r.Repository, r.Digest), r); err != nil {
			t.Fatal(err)
		}
	}
	put(&harborflowv1.ImageRecord{Registry: "registry.wso2.com", Repository: "wso2-apim/am", Digest: "sha256:" + strings.Repeat("b", 64),
		Tags: []string{"4.2.0.16"}, UpdateLevel: level(16), ArtifactKind: "index", FirstSeen: timestamppb.New(time.Unix(2000, 0)),
		Platforms: []*harborflowv1.Platform{{Os: "linux", Architecture: "amd64"}, {Os: "linux", Architecture: "arm64", Variant: "v8"}}})
	put(&harborflowv1.ImageRecord{Registry: "registry.wso2.com", Repository: "wso2-apim/am", Digest: "sha256:" + strings.Repeat("a", 64),
		Tags: []string{"4.2.0.15", "4.2.0.0"}, UpdateLevel: level(15), ArtifactKind: "image", FirstSeen: timestamppb.New(time.Unix(1000, 0))})
	// Another repository whose name starts the same is not listed.
	put(&harborflowv1.ImageRecord{Registry: "registry.wso2.com", Repository: "wso2-apim/am-tm", Digest: "sha256:" + strings.Repeat("c", 64), FirstSeen: timestamppb.Now()})

	// What the rebuilder made of the two bases: 16 built; 15, redelivered after a crash that left it build 2,
	// found 16 built meanwhile.
	rkv, err := b.KeyValue(ctx, event.BucketRebuilds)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*harborflowv1.Build{
		{Recipe: "acme-am", BaseDigest: "sha256:" + strings.Repeat("b", 64), UpdateLevel: 16, Build: 3, Tag: "4.2.0.16.3", State: rebuilder.StateBuilt},
		{Recipe: "acme-am", BaseDigest: "sha256:" + strings.Repeat("a", 64), UpdateLevel: 15, Build: 2, Tag: "4.2.0.15.2", State: rebuilder.StateSuperseded,
			SupersededBy: "4.2.0.16.3"},
	} {
		if _, err := rkv.Put(ctx, event.Key("build", b.Recipe, b.BaseDigest), b); err != nil {
			t.Fatal(err)
		}
	}

	// Where the promoter has the 16 digest (as it stores it): in staging of one chain, waiting for an approval
	// towards prod; blocked in dev of another. A digest of another repository in a chain is not listed.
	pkv, err := b.KeyValue(ctx, event.BucketPromotions)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*harborflowv1.PromotionState{
		{Chain: "acme-am", Digest: "sha256:" + strings.Repeat("b", 64), Verdict: "pending",
			Reached: []*harborflowv1.StageEntry{{Stage: "dev"}, {Stage: "staging"}},
			Gates:   []*harborflowv1.Gate{{Name: "signed", Passed: true, Verdict: "passed"}, {Name: "approval", Verdict: "pending", Reason: "no approval for prod"}}},
		{Chain: "acme-am-dr", Digest: "sha256:" + strings.Repeat("b", 64), Verdict: "blocked",
			Reached: []*harborflowv1.StageEntry{{Stage: "dev"}},
			Gates:   []*harborflowv1.Gate{{Name: "max_severity", Verdict: "blocked", Reason: "High found"}}},
		{Chain: "acme-am", Digest: "sha256:" + strings.Repeat("c", 64), Reached: []*harborflowv1.StageEntry{{Stage: "prod"}}},
	} {
		if _, err := pkv.Put(ctx, event.Key("promotion", st.Chain, st.Digest), st); err != nil {
			t.Fatal(err)
		}
	}

	out, err := runCLI(t, "--config", path, "history", "registry.wso2.com/wso2-apim/am")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "15") || !strings.Contains(lines[1], "4.2.0.15,4.2.0.0") ||
		!strings.Contains(lines[2], "linux/amd64,linux/arm64/v8") || !strings.Contains(lines[2], "sha256:bbbbbbbbbbbb ") ||
		!strings.Contains(lines[1], "acme-am: 4.2.0.15.2 superseded by 4.2.0.16.3  -") || !strings.HasSuffix(lines[1], " -") ||
		!strings.Contains(lines[2], "acme-am: 4.2.0.16.3                           acme-am: staging, pending: approval (no approval for prod); acme-am-dr: dev, blocked: max_severity (High found)") ||
		!strings.HasSuffix(lines[2], " -") {
		t.Fatalf("history table:\n%s", out)
	}
	out, err = runCLI(t, "--config", path, "history", "registry.wso2.com/wso2-apim/am", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var first struct {
		Tags        []string
		Digest      string
		UpdateLevel string
		FirstSeen   string
		Rebuilds    []struct {
			Tag          string
			State        string
			SupersededBy string
		}
		Promotions []struct {
			Chain   string
			Verdict string
			Reached []struct{ Stage string }
		}
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || len(lines) != 2 {
		t.Fatalf("history --json: %v\n%s", err, out)
	}
	if first.UpdateLevel != "15" || first.Tags[0] != "4.2.0.15" || first.FirstSeen != "1970-01-01T00:16:40Z" ||
		len(first.Rebuilds) != 1 || first.Rebuilds[0].State != "superseded" || first.Rebuilds[0].SupersededBy != "4.2.0.16.3" ||
		first.Promotions != nil {
		t.Errorf("first record %+v", first)
	}
	second := first
	second.Promotions = nil
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if len(second.Promotions) != 2 || second.Promotions[0].Chain != "acme-am" || second.Promotions[0].Verdict != "pending" ||
		len(second.Promotions[0].Reached) != 2 || second.Promotions[1].Chain != "acme-am-dr" {
		t.Errorf("second record's promotions %+v", second.Promotions)
	}
	// The rebuilt image, in its own repository, says where its signed provenance is.
	built := "sha256:" + strings.Repeat("d", 64)
	att := "harbor.acme.example/acme/am:sha256-" + strings.Repeat("d", 64) + ".att"
	put(&harborflowv1.ImageRecord{Registry: "harbor.acme.example", Repository: "acme/am", Digest: built, Tags: []string{"4.2.0.16.3"},
		UpdateLevel: level(16), ArtifactKind: "index", FirstSeen: timestamppb.New(time.Unix(3000, 0))})
	if _, err := rkv.Put(ctx, event.Key("build", "acme-am", "sha256:"+strings.Repeat("b", 64)), &harborflowv1.Build{
		Recipe: "acme-am", BaseDigest: "sha256:" + strings.Repeat("b", 64), UpdateLevel: 16, Build: 3, Tag: "4.2.0.16.3",
		State: rebuilder.StateBuilt, TargetDigest: built, Result: &harborflowv1.ImageRebuilt{Digest: built, Provenance: att}}); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "--config", path, "history", "harbor.acme.example/acme/am")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "FIRST SEEN") ||
		!strings.HasSuffix(lines[0], "PROVENANCE") || !strings.HasSuffix(lines[1], " "+att) {
		t.Errorf("history of the rebuilt repository (%v):\n%s", err, out)
	}
	out, err = runCLI(t, "--config", path, "history", "harbor.acme.example/acme/am", "--json")
	var rebuilt struct{ Provenance string }
	if err != nil || json.Unmarshal([]byte(strings.TrimSpace(out)), &rebuilt) != nil || rebuilt.Provenance != att {
		t.Errorf("history --json of the rebuilt repository (%v): %s", err, out)
	}

	if _, err := runCLI(t, "--config", path, "history", "no-slash"); err == nil {
		t.Error("a reference without a repository was accepted")
	}

	// A repository nothing is recorded for says so, and is an empty list in JSON.
	out, err = runCLI(t, "--config", path, "history", "registry.wso2.com/wso2-apim/nope")
	if err != nil || strings.TrimSpace(out) != "nothing is recorded for registry.wso2.com/wso2-apim/nope: no push of it has been inspected" {
		t.Errorf("history of an unknown repository: %v\n%s", err, out)
	}
	out, err = runCLI(t, "--config", path, "history", "registry.wso2.com/wso2-apim/nope", "--json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("history --json of an unknown repository: %v\n%q", err, out)
	}

	// The tag 4.2.0.15 moves to a rebuilt digest: it is shown there only, and the digest it left keeps 4.2.0.0.
	put(&harborflowv1.ImageRecord{Registry: "registry.wso2.com", Repository: "wso2-apim/am", Digest: "sha256:" + strings.Repeat("d", 64),
		Tags: []string{"4.2.0.15"}, UpdateLevel: level(15), ArtifactKind: "image", FirstSeen: timestamppb.New(time.Unix(3000, 0)),
		LastSeen: timestamppb.New(time.Unix(3000, 0))})
	out, err = runCLI(t, "--config", path, "history", "registry.wso2.com/wso2-apim/am")
	if err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	// FIRST SEEN, UPDATE LEVEL, DIGEST, KIND, TAGS, ...
	if len(lines) != 4 || strings.Fields(lines[1])[2] != "sha256:aaaaaaaaaaaa" || strings.Fields(lines[1])[4] != "4.2.0.0" ||
		strings.Fields(lines[3])[2] != "sha256:dddddddddddd" || strings.Fields(lines[3])[4] != "4.2.0.15" {
		t.Errorf("history after a tag moved:\n%s", out)
	}
}
