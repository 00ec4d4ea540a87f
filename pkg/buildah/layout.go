package buildah

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/harborflow/harborflow/pkg/mediatype"
	hfplatform "github.com/harborflow/harborflow/pkg/platform"
)

// Media types buildah writes to an OCI layout.
const (
	mediaIndex    = mediatype.OCIIndex
	mediaManifest = mediatype.OCIManifest
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p platform) String() string { return hfplatform.Format(p.OS, p.Architecture, p.Variant) }

// readLayout checks that the OCI layout at dir holds one entry and returns it with its platforms: the
// image's own, or those of the index's images.
func readLayout(dir string) (descriptor, []string, error) {
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := readJSON(filepath.Join(dir, "index.json"), &index); err != nil {
		return descriptor{}, nil, err
	}
	if len(index.Manifests) != 1 {
		return descriptor{}, nil, fmt.Errorf("reading OCI layout %s: %d entries in index.json, want 1", dir, len(index.Manifests))
	}
	d := index.Manifests[0]
	switch d.MediaType {
	case mediaIndex:
		var idx struct {
			Manifests []descriptor `json:"manifests"`
		}
		if err := readJSON(blobPath(dir, d.Digest), &idx); err != nil {
			return descriptor{}, nil, err
		}
		var platforms []string
		for _, m := range idx.Manifests {
			if m.Platform != nil {
				platforms = append(platforms, m.Platform.String())
			}
		}
		return d, platforms, nil
	case mediaManifest:
		var m struct {
			Config descriptor `json:"config"`
		}
		if err := readJSON(blobPath(dir, d.Digest), &m); err != nil {
			return descriptor{}, nil, err
		}
		var p platform
		if err := readJSON(blobPath(dir, m.Config.Digest), &p); err != nil {
			return descriptor{}, nil, err
		}
		return d, []string{p.String()}, nil
	}
	return descriptor{}, nil, fmt.Errorf("reading OCI layout %s: unexpected media type %q", dir, d.MediaType)
}

func blobPath(dir, digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(dir, "blobs", alg, hex)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading OCI layout: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("reading OCI layout %s: %w", path, err)
	}
	return nil
}
