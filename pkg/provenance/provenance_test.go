package provenance_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/provenance"
)

func sample() provenance.Build {
	started := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	return provenance.Build{
		Image: "harbor.example/acme/am", Digest: "sha256:" + strings.Repeat("a", 64),
		Recipe: "am", Builder: "dockerfile", Tag: "4.2.0.16.1",
		Base:      "registry.wso2.com/wso2am:4.2.0",
		BaseImage: "registry.wso2.com/wso2am@sha256:" + strings.Repeat("b", 64),
		BasePlatforms: []provenance.Platform{
			{Platform: "linux/amd64", Digest: "sha256:" + strings.Repeat("c", 64)},
			{Platform: "linux/arm64", Digest: "sha256:" + strings.Repeat("d", 64)},
		},
		ContextDigest: "sha256:" + strings.Repeat("e", 64), Dockerfile: "Dockerfile",
		EventID: "evt-1", CorrelationID: "corr-1", Version: "v1.2.3",
		Started: started, Finished: started.Add(1500 * time.Millisecond),
	}
}

func TestStatementRoundTrips(t *testing.T) {
	want := sample()
	st, err := provenance.Statement(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := provenance.Parse(st)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsed back\n%+v\nwant\n%+v", got, want)
	}
	again, _ := provenance.Statement(want)
	if string(again) != string(st) {
		t.Errorf("the same build gave two statements:\n%s\n%s", st, again)
	}
}

// The statement has the shape in-toto and SLSA readers (cosign verify-attestation) look for.
func TestStatementShape(t *testing.T) {
	st, err := provenance.Statement(sample())
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate struct {
			BuildDefinition struct {
				BuildType            string         `json:"buildType"`
				ExternalParameters   map[string]any `json:"externalParameters"`
				InternalParameters   map[string]any `json:"internalParameters"`
				ResolvedDependencies []struct {
					Name   string            `json:"name"`
					URI    string            `json:"uri"`
					Digest map[string]string `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Builder struct {
					ID      string            `json:"id"`
					Version map[string]string `json:"version"`
				} `json:"builder"`
				Metadata struct {
					InvocationID string `json:"invocationId"`
					StartedOn    string `json:"startedOn"`
					FinishedOn   string `json:"finishedOn"`
				} `json:"metadata"`
			} `json:"runDetails"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(st, &s); err != nil {
		t.Fatal(err)
	}
	if s.Type != "https://in-toto.io/Statement/v1" || s.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Errorf("_type %q, predicateType %q", s.Type, s.PredicateType)
	}
	if len(s.Subject) != 1 || s.Subject[0].Name != "harbor.example/acme/am" || s.Subject[0].Digest["sha256"] != strings.Repeat("a", 64) {
		t.Errorf("subject %+v", s.Subject)
	}
	def := s.Predicate.BuildDefinition
	if def.ExternalParameters["recipe"] != "am" || def.ExternalParameters["builder"] != "dockerfile" ||
		def.ExternalParameters["base"] != "registry.wso2.com/wso2am:4.2.0" {
		t.Errorf("externalParameters %v", def.ExternalParameters)
	}
	if def.InternalParameters["eventId"] != "evt-1" || def.InternalParameters["correlationId"] != "corr-1" {
		t.Errorf("internalParameters %v", def.InternalParameters)
	}
	var names []string
	for _, d := range def.ResolvedDependencies {
		names = append(names, d.Name+" "+d.URI)
	}
	wantDeps := []string{
		"base oci://registry.wso2.com/wso2am@sha256:" + strings.Repeat("b", 64),
		"base linux/amd64 oci://registry.wso2.com/wso2am@sha256:" + strings.Repeat("c", 64),
		"base linux/arm64 oci://registry.wso2.com/wso2am@sha256:" + strings.Repeat("d", 64),
		"context ",
	}
	if !reflect.DeepEqual(names, wantDeps) {
		t.Errorf("resolvedDependencies\n%q\nwant\n%q", names, wantDeps)
	}
	run := s.Predicate.RunDetails
	if run.Builder.ID != provenance.BuilderID || run.Builder.Version["harborflow"] != "v1.2.3" {
		t.Errorf("builder %+v", run.Builder)
	}
	if run.Metadata.InvocationID != "evt-1" || run.Metadata.StartedOn != "2026-12-01T09:00:00Z" || run.Metadata.FinishedOn != "2026-12-01T09:00:01.500Z" {
		t.Errorf("metadata %+v", run.Metadata)
	}
}

func TestStatementRefusesWhatItCannotSay(t *testing.T) {
	for name, edit := range map[string]func(*provenance.Build){
		"no digest":           func(b *provenance.Build) { b.Digest = "" },
		"base without digest": func(b *provenance.Build) { b.BaseImage = "registry.wso2.com/wso2am:4.2.0" },
		"bad context digest":  func(b *provenance.Build) { b.ContextDigest = "sha256:xyz" },
		"source by tag":       func(b *provenance.Build) { b.Source = "harbor.example/acme/custom:1" },
	} {
		b := sample()
		edit(&b)
		if _, err := provenance.Statement(b); !errors.Is(err, provenance.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
}

func TestParseRefusesOtherStatements(t *testing.T) {
	st, err := provenance.Statement(sample())
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"not json":        "{",
		"other predicate": strings.Replace(string(st), "https://slsa.dev/provenance/v1", "https://spdx.dev/Document", 1),
		"other build":     strings.Replace(string(st), provenance.BuildType, "https://example.com/other", 1),
		"no subject":      `{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`,
	} {
		if _, err := provenance.Parse([]byte(text)); !errors.Is(err, provenance.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
}

// ContextDigest is what `find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum` gives, in
// Go: a person can check it by hand.
func TestContextDigestIsSha256sumOfTheFiles(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"Dockerfile": "FROM x\n", "conf/deployment.toml": "[server]\n", "lib/driver.jar": "jar"}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var lines strings.Builder
	for _, name := range names {
		fmt.Fprintf(&lines, "%x  %s\n", sha256.Sum256([]byte(files[name])), name)
	}
	sum := sha256.Sum256([]byte(lines.String()))
	got, err := provenance.ContextDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		t.Errorf("ContextDigest %s, want %s", got, want)
	}
	if err := os.Chtimes(filepath.Join(dir, "Dockerfile"), time.Now(), time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if again, _ := provenance.ContextDigest(dir); again != got {
		t.Errorf("a file's time changed the digest: %s, then %s", got, again)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, _ := provenance.ContextDigest(dir); changed == got {
		t.Error("a changed file kept the digest")
	}
}
