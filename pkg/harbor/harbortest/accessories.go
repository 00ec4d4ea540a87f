package harbortest

import (
	"cmp"
	"net/http"
	"regexp"
	"slices"
)

// Accessories as Harbor ≥ 2.7 keeps them (HARBOR.md §7.1): a cosign signature pushed under the tag
// sha256-<hex>.sig of an artifact of the same repository, and an OCI referrer (a manifest with a subject),
// are accessories of their subject: listed under it with with_accessory=true and at …/accessories, never
// roots of the artifact list, never scanned.
const (
	// accessoryCosign is the type §7.1 saw Harbor 2.13.5 give both forms.
	accessoryCosign = "signature.cosign"
	// iconCosign is the icon digest Harbor gives cosign signatures (src/lib/icon/const.go).
	iconCosign = "sha256:20401d5b3a0f6dbc607c8d732eb08471af4ae6b19811a4efce8c6a724aed2882"
)

// cosignTag is cosign's tag for a signature of sha256:<hex>.
var cosignTag = regexp.MustCompile(`^sha256-([0-9a-f]{64})\.sig$`)

func (a *artifact) accessory() bool { return a.AccessoryOf != "" }

// markAccessoryLocked makes a, new in repo and pushed as reference, an accessory when it is one: a referrer of
// its subject, or a cosign signature by tag of an artifact the repository has.
func (s *Server) markAccessoryLocked(repo *repoRecord, a *artifact, reference string) {
	switch {
	case a.Subject != "":
		a.AccessoryOf = a.Subject
	default:
		m := cosignTag.FindStringSubmatch(reference)
		if m == nil || repo.Artifacts["sha256:"+m[1]] == nil {
			return
		}
		a.AccessoryOf = "sha256:" + m[1]
	}
	a.AccessoryID = s.st.next()
}

// accessoriesOf are the accessories of a in repo, newest first.
func accessoriesOf(repo *repoRecord, a *artifact) []*artifact {
	var out []*artifact
	for _, x := range repo.Artifacts {
		if x.AccessoryOf == a.Digest {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, func(x, y *artifact) int {
		if c := y.PushTime.Compare(x.PushTime); c != 0 {
			return c
		}
		return cmp.Compare(y.AccessoryID, x.AccessoryID)
	})
	return out
}

// dropAccessoriesLocked deletes the accessories of a, just deleted, silently, as Harbor's deleteDeeply does:
// each with its tags, its children and its own accessories (a signature of a referrer). It returns their
// digests, to forget in the backing registry.
func (s *Server) dropAccessoriesLocked(repo *repoRecord, a *artifact) []string {
	var gone []string
	for _, acc := range accessoriesOf(repo, a) {
		repo.remove(acc)
		gone = append(gone, acc.Digest)
		gone = append(gone, s.dropChildrenLocked(repo, acc)...)
		gone = append(gone, s.dropAccessoriesLocked(repo, acc)...)
	}
	return gone
}

// accessoryJSON is an accessory as the API lists it (HARBOR.md §7.1).
func accessoryJSON(repo *repoRecord, acc *artifact) map[string]any {
	var subjectID int64
	if sub := repo.Artifacts[acc.AccessoryOf]; sub != nil {
		subjectID = sub.ID
	}
	return map[string]any{
		"id": acc.AccessoryID, "artifact_id": acc.ID, "digest": acc.Digest, "size": acc.Size, "type": accessoryCosign,
		"subject_artifact_id": subjectID, "subject_artifact_digest": acc.AccessoryOf, "subject_artifact_repo": repo.Name,
		"icon": iconCosign, "creation_time": apiTime(acc.PushTime),
	}
}

// listAccessories is GET …/artifacts/{ref}/accessories: 200 with X-Total-Count (HARBOR.md §7.1).
func (s *Server) listAccessories(c *call) *apiError {
	pg, aerr := paging(c)
	if aerr != nil {
		return aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, repo, a, err := s.artifactFor(c, accessRead)
	if err != nil {
		return err
	}
	out := []map[string]any{}
	for _, acc := range paginate(c, pg, accessoriesOf(repo, a)) {
		out = append(out, accessoryJSON(repo, acc))
	}
	writeJSON(c.w, http.StatusOK, out)
	return nil
}
