package harbortest_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/harbor/harbortest"
	"github.com/harborflow/harborflow/pkg/registry/registrytest"
)

type accessoryJSON struct {
	ID                    int64  `json:"id"`
	ArtifactID            int64  `json:"artifact_id"`
	Digest                string `json:"digest"`
	Size                  int64  `json:"size"`
	Type                  string `json:"type"`
	SubjectArtifactID     int64  `json:"subject_artifact_id"`
	SubjectArtifactDigest string `json:"subject_artifact_digest"`
	SubjectArtifactRepo   string `json:"subject_artifact_repo"`
	Icon                  string `json:"icon"`
	CreationTime          string `json:"creation_time"`
}

// HARBOR.md §7.1: a cosign signature by tag sha256-<hex>.sig and an OCI referrer (answered with OCI-Subject)
// are signature.cosign accessories of their subject: listed under with_accessory=true and at …/accessories,
// not roots of the list, PUSH_ARTIFACT for each, never scanned (even with auto_scan), and a scan request on
// one is a 400.
func TestAccessories(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec, harbortest.WithScanDelay(time.Hour))
	s.CreateProject(t, "p", false, map[string]string{"auto_scan": "true"})
	subscribe(t, s, "p", "PUSH_ARTIFACT")
	src := registrytest.New(t)
	img := src.PushImage(t, "src/app:1", registrytest.Image{})
	sig := src.PushSignature(t, "src/app", img)
	ref := src.PushReferrer(t, "src/app", "application/vnd.dev.cosign.artifact.sig.v1+json", img)

	push(t, s, src, "src/app:1", "p/app:1")
	push(t, s, src, "src/app:"+sig.Tag, "p/app:"+sig.Tag)
	push(t, s, src, "src/app@"+ref.Digest, "p/app@"+ref.Digest)
	evs := ofType(rec.wait(t, 3), "PUSH_ARTIFACT")
	if len(evs) != 3 || evs[1].Tag != sig.Tag || evs[1].Digest != sig.Digest || evs[2].Tag != ref.Digest || evs[2].Digest != ref.Digest {
		t.Errorf("push events %+v", evs)
	}
	// The registry front answers a referrer's PUT with OCI-Subject.
	mt, body := src.ReadManifest(t, "src/app@"+ref.Digest)
	a := raw(t, s, http.MethodPut, "/v2/p/app/manifests/"+ref.Digest, admin, pass, body, "Content-Type", mt)
	want(t, a, http.StatusCreated)
	if got := a.header.Get("OCI-Subject"); got != img.Digest {
		t.Errorf("OCI-Subject %q, want %s", got, img.Digest)
	}

	const base = "/projects/p/repositories/app/artifacts"
	a = call(t, s, http.MethodGet, base, admin, pass, nil)
	var list []struct{ Digest string }
	a.json(t, &list)
	if a.header.Get("X-Total-Count") != "1" || len(list) != 1 || list[0].Digest != img.Digest {
		t.Errorf("list %s (X-Total-Count %s), want the subject alone", a.body, a.header.Get("X-Total-Count"))
	}
	if a := call(t, s, http.MethodGet, base+"/1", admin, pass, nil); !strings.Contains(string(a.body), `"accessories":null`) {
		t.Errorf("without with_accessory: %s", a.body)
	}

	var subject struct {
		ID          int64
		Accessories []accessoryJSON
	}
	call(t, s, http.MethodGet, base+"/1?with_accessory=true", admin, pass, nil).json(t, &subject)
	if len(subject.Accessories) != 2 {
		t.Fatalf("accessories %+v", subject.Accessories)
	}
	artifactIDs := map[string]int64{}
	for _, d := range []string{sig.Digest, ref.Digest} {
		var art struct{ ID int64 }
		call(t, s, http.MethodGet, base+"/"+d, admin, pass, nil).json(t, &art)
		artifactIDs[d] = art.ID
	}
	for _, acc := range subject.Accessories {
		if acc.Type != "signature.cosign" || acc.SubjectArtifactDigest != img.Digest || acc.SubjectArtifactID != subject.ID ||
			acc.SubjectArtifactRepo != "p/app" || acc.ArtifactID != artifactIDs[acc.Digest] || acc.ArtifactID == 0 ||
			acc.ID == 0 || acc.Size == 0 || !strings.HasPrefix(acc.Icon, "sha256:") || !strings.HasSuffix(acc.CreationTime, "Z") {
			t.Errorf("accessory %+v", acc)
		}
	}

	a = call(t, s, http.MethodGet, base+"/1/accessories", admin, pass, nil)
	want(t, a, http.StatusOK)
	var accs []accessoryJSON
	a.json(t, &accs)
	if a.header.Get("X-Total-Count") != "2" || len(accs) != 2 {
		t.Errorf("accessories %s (X-Total-Count %s)", a.body, a.header.Get("X-Total-Count"))
	}

	// Not scanned on push, and a scan request is refused.
	for _, d := range []string{sig.Digest, ref.Digest} {
		if ov := apiOverview(t, s, base+"/"+d); ov != nil {
			t.Errorf("accessory %s scanned: %v", d, ov)
		}
	}
	if ov := apiOverview(t, s, base+"/1"); ov == nil || ov["scan_status"] != "Running" {
		t.Errorf("the subject is not being scanned: %v", ov)
	}
	for _, r := range []string{sig.Tag, ref.Digest} {
		msg := wantError(t, call(t, s, http.MethodPost, base+"/"+r+"/scan", admin, pass, nil), http.StatusBadRequest, "BAD_REQUEST")
		if !strings.HasPrefix(msg, "the configured scanner ") || !strings.Contains(msg, "does not support scanning artifact with mime type ") {
			t.Errorf("400 message %q", msg)
		}
	}

	// Deleting the subject takes its accessories along.
	want(t, call(t, s, http.MethodDelete, base+"/1", admin, pass, nil), http.StatusOK)
	wantError(t, call(t, s, http.MethodGet, base+"/"+sig.Digest, admin, pass, nil), http.StatusNotFound, "NOT_FOUND")
}

// HARBOR.md §3.2: a copy carries the source's accessories; at the destination they are accessories of the
// copy (not roots), each new one with its PUSH_ARTIFACT. Each keeps its own tags, as Harbor's copyDeeply
// ensures every copied artifact with its source's tags: the signature its sha256-<hex>.sig (its event's tag,
// and cosign finds it there by it), the untagged referrer none (its event shows the digest).
func TestCopyCarriesAccessories(t *testing.T) {
	rec := newRecorder()
	s := standIn(t, rec)
	s.CreateProject(t, "stage", false, nil)
	s.CreateProject(t, "prod", false, nil)
	subscribe(t, s, "prod", "PUSH_ARTIFACT")
	src := registrytest.New(t)
	img := src.PushImage(t, "src/app:1", registrytest.Image{})
	sig := src.PushSignature(t, "src/app", img)
	ref := src.PushReferrer(t, "src/app", "application/vnd.dev.cosign.artifact.sig.v1+json", img)
	push(t, s, src, "src/app:1", "stage/app:1")
	push(t, s, src, "src/app:"+sig.Tag, "stage/app:"+sig.Tag)
	push(t, s, src, "src/app@"+ref.Digest, "stage/app@"+ref.Digest)

	want(t, call(t, s, http.MethodPost, "/projects/prod/repositories/app/artifacts?from=stage/app:1", admin, pass, nil), http.StatusCreated)
	evs := ofType(rec.wait(t, 3), "PUSH_ARTIFACT")
	got := map[string]string{}
	for _, e := range evs {
		got[e.Digest] = e.Tag
	}
	if len(evs) != 3 || got[img.Digest] != "1" || got[sig.Digest] != sig.Tag || got[ref.Digest] != ref.Digest {
		t.Errorf("copy events %+v", evs)
	}
	sigAt := raw(t, s, http.MethodGet, "/v2/prod/app/manifests/"+sig.Tag, admin, pass, nil, "Accept", registrytest.MediaOCIManifest)
	if want(t, sigAt, http.StatusOK); sigAt.header.Get("Docker-Content-Digest") != sig.Digest {
		t.Errorf("prod/app:%s names %q, want the signature %s", sig.Tag, sigAt.header.Get("Docker-Content-Digest"), sig.Digest)
	}

	const base = "/projects/prod/repositories/app/artifacts"
	var subject struct {
		ID          int64
		Accessories []accessoryJSON
	}
	call(t, s, http.MethodGet, base+"/1?with_accessory=true", admin, pass, nil).json(t, &subject)
	digests := map[string]bool{}
	for _, acc := range subject.Accessories {
		digests[acc.Digest] = true
		if acc.Type != "signature.cosign" || acc.SubjectArtifactID != subject.ID || acc.SubjectArtifactRepo != "prod/app" ||
			acc.SubjectArtifactDigest != img.Digest || acc.ID == 0 || acc.ArtifactID == 0 {
			t.Errorf("copied accessory %+v", acc)
		}
	}
	if len(subject.Accessories) != 2 || !digests[sig.Digest] || !digests[ref.Digest] {
		t.Errorf("accessories of the copy %+v, want the signature and the referrer", subject.Accessories)
	}
	a := call(t, s, http.MethodGet, base, admin, pass, nil)
	if a.header.Get("X-Total-Count") != "1" {
		t.Errorf("list %s (X-Total-Count %s), want the copy alone", a.body, a.header.Get("X-Total-Count"))
	}
	// The content came along: the registry serves the referrer at the destination.
	want(t, raw(t, s, http.MethodGet, "/v2/prod/app/manifests/"+ref.Digest, admin, pass, nil,
		"Accept", "application/vnd.oci.image.manifest.v1+json"), http.StatusOK)
}

// HARBOR.md §7.1, Harbor's deleteDeeply: deleting an artifact deletes its accessories, and theirs in turn —
// a cosign signature by tag and a referrer, a signature of that referrer —, from the API and the registry.
// An attestation pushed under cosign's tag sha256-<hex>.att is no accessory in Harbor (its cosign middleware
// knows .sig only): a root of its own, listed with its tag, it stays.
func TestDeletingAnArtifactTakesItsAccessoriesNotItsAttestation(t *testing.T) {
	s := standIn(t, nil)
	s.CreateProject(t, "p", false, nil)
	src := registrytest.New(t)
	img := src.PushImage(t, "src/app:1", registrytest.Image{})
	sig := src.PushSignature(t, "src/app", img)
	ref := src.PushReferrer(t, "src/app", "application/vnd.dev.cosign.artifact.sig.v1+json", img)
	refSig := src.PushSignature(t, "src/app", ref)
	att := src.PushAttestation(t, "src/app", img)
	push(t, s, src, "src/app:1", "p/app:1")
	push(t, s, src, "src/app:"+sig.Tag, "p/app:"+sig.Tag)
	push(t, s, src, "src/app@"+ref.Digest, "p/app@"+ref.Digest)
	push(t, s, src, "src/app:"+refSig.Tag, "p/app:"+refSig.Tag)
	push(t, s, src, "src/app:"+att.Tag, "p/app:"+att.Tag)

	const base = "/projects/p/repositories/app/artifacts"
	roots := func() map[string][]string {
		t.Helper()
		var list []struct {
			Digest string
			Tags   []struct{ Name string }
		}
		call(t, s, http.MethodGet, base, admin, pass, nil).json(t, &list)
		out := map[string][]string{}
		for _, a := range list {
			out[a.Digest] = []string{}
			for _, tg := range a.Tags {
				out[a.Digest] = append(out[a.Digest], tg.Name)
			}
		}
		return out
	}
	if got := roots(); len(got) != 2 || got[img.Digest] == nil || !slices.Equal(got[att.Digest], []string{att.Tag}) {
		t.Fatalf("roots before %v, want the image and its attestation", got)
	}

	want(t, call(t, s, http.MethodDelete, base+"/"+img.Digest, admin, pass, nil), http.StatusOK)
	for what, d := range map[string]string{"the signature": sig.Digest, "the referrer": ref.Digest, "the referrer's signature": refSig.Digest} {
		if a := call(t, s, http.MethodGet, base+"/"+d, admin, pass, nil); a.status != http.StatusNotFound {
			t.Errorf("%s after its subject's deletion: %d %s", what, a.status, a.body)
		}
		if a := raw(t, s, http.MethodGet, "/v2/p/app/manifests/"+d, admin, pass, nil, "Accept", registrytest.MediaOCIManifest); a.status != http.StatusNotFound {
			t.Errorf("the registry still serves %s: %d", what, a.status)
		}
	}
	if got := roots(); len(got) != 1 || !slices.Equal(got[att.Digest], []string{att.Tag}) {
		t.Errorf("roots after %v, want the attestation alone, with its tag", got)
	}
	want(t, raw(t, s, http.MethodGet, "/v2/p/app/manifests/"+att.Tag, admin, pass, nil, "Accept", registrytest.MediaOCIManifest), http.StatusOK)
}

// Harbor's deleteDeeply deletes an index's children with their own accessories: the signature of a platform
// manifest (the rebuilder signs the index and each platform manifest) goes with the index.
func TestDeletingAnIndexTakesItsChildrensSignatures(t *testing.T) {
	s := standIn(t, nil)
	s.CreateProject(t, "p", false, nil)
	src := registrytest.New(t)
	idx := src.PushIndex(t, "src/app:2", twoPlatforms())
	sig := src.PushSignature(t, "src/app", idx)
	childSig := src.PushSignature(t, "src/app", idx.Children[0])
	push(t, s, src, "src/app:2", "p/app:2")
	push(t, s, src, "src/app:"+sig.Tag, "p/app:"+sig.Tag)
	push(t, s, src, "src/app:"+childSig.Tag, "p/app:"+childSig.Tag)

	const base = "/projects/p/repositories/app/artifacts"
	var child struct{ Accessories []accessoryJSON }
	call(t, s, http.MethodGet, base+"/"+idx.Children[0].Digest+"?with_accessory=true", admin, pass, nil).json(t, &child)
	if len(child.Accessories) != 1 || child.Accessories[0].Digest != childSig.Digest {
		t.Fatalf("the platform manifest's accessories %+v, want its signature", child.Accessories)
	}
	want(t, call(t, s, http.MethodDelete, base+"/"+idx.Digest, admin, pass, nil), http.StatusOK)
	for what, d := range map[string]string{"the index's signature": sig.Digest, "the platform manifest": idx.Children[0].Digest,
		"the platform manifest's signature": childSig.Digest} {
		if a := call(t, s, http.MethodGet, base+"/"+d, admin, pass, nil); a.status != http.StatusNotFound {
			t.Errorf("%s after the index's deletion: %d %s", what, a.status, a.body)
		}
	}
	if a := raw(t, s, http.MethodGet, "/v2/p/app/manifests/"+childSig.Digest, admin, pass, nil, "Accept", registrytest.MediaOCIManifest); a.status != http.StatusNotFound {
		t.Errorf("the registry still serves the platform manifest's signature: %d", a.status)
	}
}
