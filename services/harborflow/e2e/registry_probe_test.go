//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
)

// TestRegistryLinkRace is a probe of the registry under test, not of harborflow, run only with
// E2E_REGISTRY_PROBE=1. distribution 2.8's filesystem driver rewrites a repository's link files (the file that
// says "this repository has blob X" or "has manifest Y") in place: truncate, then write. A request that reads the
// link in between reads an empty file, fails to parse it as a digest, and answers accordingly. The probe makes
// two such races happen on purpose and counts the answers:
//
//   - a manifest PUT while the same repository mounts one of the manifest's layers again (two builds of a recipe
//     writing to one target at once): 400 DIGEST_INVALID + MANIFEST_BLOB_UNKNOWN, which the registry client
//     reports as ErrIncompleteWrite and meets by writing again;
//   - a GET of a manifest by digest while the same manifest is PUT again under a tag (the rebuilder tags by
//     re-putting the manifest while the inspector reads it): 500 UNKNOWN "invalid checksum digest format".
//
// It proves nothing about harborflow and CI does not run it: what harborflow does with these answers is run in
// CI by the rebuilder's TestCrashAtEveryWriteStep (the registry refuses each write with them), the registry
// client's TestOverlayRewritesAnIncompleteWrite, and TestE2EChaos here.
func TestRegistryLinkRace(t *testing.T) {
	if os.Getenv("E2E_REGISTRY_PROBE") == "" {
		t.Skip("a probe of the registry itself: set E2E_REGISTRY_PROBE=1 to run it")
	}
	for _, cache := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", cache), func(t *testing.T) { probeLinkRace(t, cache) })
	}
}

func probeLinkRace(t *testing.T, cache bool) {
	reg := startDistribution(t, artifactDir(t), registryOptions{cache: cache})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	layer, diff, err := tarGz(map[string]string{"etc/os-release": "ID=probe\n"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diff}}})
	body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaOCI,
		"config": blobDesc(mediaCfg, cfg), "layers": []any{blobDesc(mediaLayer, layer)}})
	for _, repo := range []string{"probe/src", "probe/app"} {
		r, err := reg.ref(repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{layer, cfg} {
			if _, err := reg.rc.BlobPut(ctx, r, descriptor.Descriptor{Digest: digest.FromBytes(b), Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := "http://" + reg.Host + "/v2/probe/app"
	putManifest := func(ref string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/manifests/"+ref, bytes.NewReader(body))
		req.Header.Set("Content-Type", mediaOCI)
		return do(req)
	}
	if code, msg := putManifest("v1"); code != http.StatusCreated {
		t.Fatalf("first manifest PUT: %d %s", code, msg)
	}
	mount := func() (int, string) {
		q := url.Values{"mount": {digest.FromBytes(layer).String()}, "from": {"probe/src"}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/blobs/uploads/?"+q.Encode(), nil)
		return do(req)
	}
	getManifest := func() (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/manifests/"+digest.FromBytes(body).String(), nil)
		req.Header.Set("Accept", mediaOCI)
		return do(req)
	}

	const rounds = 2000
	t.Logf("manifest PUT while its layer is mounted again: %s", race(rounds, func() (int, string) { return putManifest("v1") }, mount))
	t.Logf("manifest GET by digest while it is PUT again by tag: %s", race(rounds, getManifest, func() (int, string) { return putManifest("v2") }))
}

// race runs observe and disturb rounds times each, concurrently, and tallies observe's answers.
func race(rounds int, observe, disturb func() (int, string)) string {
	var wg sync.WaitGroup
	wg.Go(func() {
		for range rounds {
			disturb()
		}
	})
	tally := map[string]int{}
	for range rounds {
		code, msg := observe()
		tally[fmt.Sprintf("%d %s", code, msg)]++
	}
	wg.Wait()
	lines := make([]string, 0, len(tally))
	for k, n := range tally {
		lines = append(lines, fmt.Sprintf("%5d × %s", n, k))
	}
	sort.Strings(lines)
	return "\n" + strings.Join(lines, "\n")
}

// do sends req and returns the status and, for an error, the body's error codes and details.
func do(req *http.Request) (int, string) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 400 {
		return resp.StatusCode, ""
	}
	var e struct {
		Errors []struct {
			Code   string `json:"code"`
			Detail any    `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &e) != nil {
		return resp.StatusCode, string(b)
	}
	var parts []string
	for _, x := range e.Errors {
		parts = append(parts, fmt.Sprintf("%s(%v)", x.Code, x.Detail))
	}
	return resp.StatusCode, strings.Join(parts, " + ")
}
